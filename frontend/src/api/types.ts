// Names for the generated API types (schema.d.ts is generated from /api/schema/; never edit it by hand).
import type { components } from "./schema";

type S = components["schemas"];
/** `workspaces` is a method field the schema types loosely; this is what MeWorkspaceSerializer returns. */
export interface MeWorkspace {
  id: number;
  name: string;
  slug: string;
  role: S["RoleEnum"];
}
export type Me = Omit<S["Me"], "workspaces"> & { readonly workspaces: MeWorkspace[] };
/** The `me` answer (of `GET me/`, a sign-in, a profile change) with its workspaces typed. */
export const asMe = (me: S["Me"]): Me => me as unknown as Me;
export type Workspace = S["Workspace"];
export type Role = S["RoleEnum"];
export type Membership = S["Membership"];
export type Invitation = S["Invitation"];
export type ApiKey = S["ApiKey"];
export type ApiKeyCreated = S["ApiKeyCreated"];
export type Connector = S["Connector"];
export type ConnectorType = S["ConnectorType"];
export type CheckOutput = S["CheckOutput"];
export type DiscoverOutput = S["DiscoverOutput"];
export type Stream = S["Stream"];
export type PreviewOutput = S["PreviewOutput"];
export type Pipeline = S["Pipeline"];
/** The pipeline document as the API takes it (`definition` of a save, a validate, a preview). */
export type PipelineDefinition = S["PipelineWriteRequest"]["definition"];
export type SampleOutput = S["SampleOutput"];
export type PipelineVersion = S["PipelineVersion"];
export type VersionDiff = S["VersionDiff"];
export type ValidateOutput = S["ValidateOutput"];
export type Run = S["Run"];
export type RunDetail = S["RunDetail"];
/** A run's `options` (free-form in the Run schema): what started it, sent again by a re-run. */
export type RunStart = S["RunStartRequest"];
export type RunDestination = S["RunDestination"];
export type RunStatus = S["RunStatusEnum"];
export type NodeRun = S["NodeRun"];
export type RunLog = S["RunLog"];
export type RejectedRecord = S["RejectedRecord"];

/** `last_run` is a free-form object in the schema; this is what the pipelines API puts in it. */
export interface LastRun {
  id: number;
  status: RunStatus;
  queued_at: string;
}

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export type RunSeries = S["RunSeries"];
export type RunSeriesPoint = S["RunSeriesPoint"];
export type Alert = S["Alert"];
export type Health = S["Health"];
export type HealthComponent = S["HealthComponent"];
export type ApiEvent = S["Event"];
export type AuditEntry = S["AuditEntry"];
export type Webhook = S["Webhook"];
export type WebhookWithSecret = S["WebhookWithSecret"];
export type Delivery = S["Delivery"];
export type DeliveryAttempt = S["DeliveryAttempt"];
export type StepType = S["StepType"];
export type RuleType = S["RuleType"];
export type ConnectorStreams = S["ConnectorStreams"];
export type PipelinePreview = S["PipelinePreviewOutput"];
export type SchemaChange = S["SchemaChange"];
export type StreamSummary = S["StreamSummary"];
export type StreamSchemaVersion = S["StreamSchemaVersion"];
export type QualityReport = S["QualityReport"];
export type NodeProfile = S["NodeProfile"];
