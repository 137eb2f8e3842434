"use client";

import Form from "@rjsf/core";
import type { RJSFSchema, UiSchema } from "@rjsf/utils";
import { customizeValidator } from "@rjsf/validator-ajv8";
import { useEffect, useMemo, useState } from "react";

import { ApiError } from "@/api/client";
import type { ConnectorType } from "@/api/types";
import { Button } from "@/components/ui";
import { fromStored, secretFields, simplifySchema, toExtraErrors, toSubmit, type JsonSchema } from "@/lib/configSchema";
import { toastError } from "@/lib/store";

// pydantic marks passwords `format: password`; ajv would otherwise warn about an unknown format.
const validator = customizeValidator({ customFormats: { password: /.*/s } });

export interface ConnectorFormValues {
  name: string;
  config: Record<string, unknown>;
}

/**
 * A connector's name and its config, as a form generated from the type's JSON Schema. Secrets are password
 * inputs that never show a value: a stored secret reads "set", and left empty it is kept.
 */
export function ConnectorForm({
  type,
  initial,
  submitLabel,
  onSubmit,
  readOnly,
  overrides,
}: {
  type: ConnectorType;
  initial?: { name: string; config: Record<string, unknown> };
  submitLabel: string;
  onSubmit: (values: ConnectorFormValues) => Promise<void>;
  readOnly?: boolean;
  /** config values set from outside the form (an uploaded file's path) */
  overrides?: Record<string, unknown>;
}) {
  const configSchema = useMemo(() => simplifySchema(type.config_schema as JsonSchema), [type]);
  const secrets = useMemo(() => secretFields(configSchema, type.secret_fields), [configSchema, type]);
  const stored = useMemo(() => fromStored(initial?.config ?? {}), [initial]);
  const [formData, setFormData] = useState<{ name?: string; config?: Record<string, unknown> }>({
    name: initial?.name ?? "",
    config: stored.formData,
  });
  useEffect(() => {
    if (overrides) setFormData((old) => ({ ...old, config: { ...old.config, ...overrides } }));
  }, [overrides]);
  const [extraErrors, setExtraErrors] = useState<Record<string, unknown>>({});
  const [busy, setBusy] = useState(false);

  const schema = useMemo(
    () =>
      ({
        type: "object",
        required: ["name"],
        properties: {
          name: { type: "string", title: "Name", minLength: 1, maxLength: 100, description: "Pipelines refer to the connector by this name." },
          config: { ...configSchema, title: `${type.title} settings` },
        },
      }) as RJSFSchema,
    [configSchema, type.title],
  );

  const uiSchema = useMemo(() => {
    const config: UiSchema = {};
    for (const key of secrets) {
      const isSet = stored.setSecrets.includes(key);
      config[key] = {
        "ui:widget": "password",
        "ui:options": { autocomplete: "new-password" },
        ...(isSet ? { "ui:placeholder": "set (leave empty to keep)", "ui:help": "This secret is set. Type a new value to replace it." } : {}),
      };
    }
    return { name: { "ui:autofocus": !initial }, config, "ui:submitButtonOptions": { norender: true } } as UiSchema;
  }, [secrets, stored, initial]);

  return (
    <Form
      className="rjsf space-y-4"
      schema={schema}
      uiSchema={uiSchema}
      formData={formData}
      validator={validator}
      extraErrors={extraErrors as never}
      showErrorList={false}
      noHtml5Validate
      readonly={readOnly}
      onChange={(e) => setFormData(e.formData as typeof formData)}
      onSubmit={async (e) => {
        const data = e.formData as { name: string; config?: Record<string, unknown> };
        setBusy(true);
        setExtraErrors({});
        try {
          await onSubmit({ name: data.name, config: toSubmit(data.config ?? {}, secrets) });
        } catch (error) {
          if (error instanceof ApiError && Object.keys(error.fields).length) {
            const errors: Record<string, unknown> = toExtraErrors(error.fields, "config");
            if (error.fields.name) errors.name = { __errors: error.fields.name };
            setExtraErrors(errors);
            const placed = Object.keys(error.fields).filter((k) => k === "name" || k === "config" || k.startsWith("config."));
            const rest = Object.entries(error.fields).filter(([k]) => !placed.includes(k));
            if (rest.length) toastError(new Error(rest.map(([k, v]) => `${k}: ${v.join(" ")}`).join(" ")));
          } else {
            toastError(error);
          }
        } finally {
          setBusy(false);
        }
      }}
    >
      {readOnly ? null : (
        <Button type="submit" variant="primary" busy={busy}>
          {submitLabel}
        </Button>
      )}
    </Form>
  );
}
