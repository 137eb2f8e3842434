"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { api, ok } from "@/api/client";
import type { Pipeline } from "@/api/types";
import { Button, Field, inputClass } from "@/components/ui";
import { applyApiError } from "@/lib/forms";
import { useUi } from "@/lib/store";

const schema = z.object({
  schedule_cron: z
    .string()
    .trim()
    .refine((v) => v === "" || v.split(/\s+/).length === 5, "Five fields: minute hour day month weekday."),
  schedule_timezone: z.string().trim().min(1, "A time zone, e.g. UTC or Europe/Paris."),
  max_attempts: z.coerce.number().int().min(1).max(20),
  description: z.string(),
});
type Values = z.input<typeof schema>;
const FIELDS = ["schedule_cron", "schedule_timezone", "max_attempts", "description"] as const;

/** Schedule and run settings; the server turns the cron into words (shown above the form). */
export function ScheduleForm({ pipeline, readOnly }: { pipeline: Pipeline; readOnly: boolean }) {
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors, isSubmitting, isDirty },
    reset,
  } = useForm<Values>({
    resolver: zodResolver(schema),
    defaultValues: {
      schedule_cron: pipeline.schedule_cron,
      schedule_timezone: pipeline.schedule_timezone,
      max_attempts: pipeline.max_attempts,
      description: pipeline.description,
    },
  });
  const onSubmit = handleSubmit(async (values) => {
    try {
      const saved = await ok(api.PATCH("/api/v1/pipelines/{id}/", { params: { path: { id: pipeline.id } }, body: { ...schema.parse(values), name: pipeline.name } }));
      client.setQueryData(["pipeline", pipeline.id], saved);
      void client.invalidateQueries({ queryKey: ["pipelines"] });
      reset(values);
      toast("success", `Schedule: ${saved.schedule_description || "none"}.`);
    } catch (error) {
      applyApiError(error, setError, FIELDS);
    }
  });
  const msg = (m?: string) => (m ? [m] : undefined);
  return (
    <form onSubmit={onSubmit} noValidate className="max-w-xl space-y-4">
      <p className="text-sm">
        Now: <strong>{pipeline.schedule_description || "no schedule"}</strong>
      </p>
      <Field label="Schedule (cron)" hint="Empty for no schedule. E.g. 0 6 * * 1-5 for 06:00 on weekdays." errors={msg(errors.schedule_cron?.message)}>
        {(p) => <input {...p} {...register("schedule_cron")} readOnly={readOnly} className={`${inputClass} font-mono`} />}
      </Field>
      <Field label="Time zone" errors={msg(errors.schedule_timezone?.message)}>
        {(p) => <input {...p} {...register("schedule_timezone")} readOnly={readOnly} className={inputClass} />}
      </Field>
      <Field label="Attempts per run" errors={msg(errors.max_attempts?.message)}>
        {(p) => <input {...p} {...register("max_attempts")} type="number" min={1} max={20} readOnly={readOnly} className={inputClass} />}
      </Field>
      <Field label="Description" errors={msg(errors.description?.message)}>
        {(p) => <textarea {...p} {...register("description")} rows={3} readOnly={readOnly} className={inputClass} />}
      </Field>
      {!readOnly ? (
        <Button type="submit" variant="primary" busy={isSubmitting} disabled={!isDirty}>
          Save settings
        </Button>
      ) : null}
    </form>
  );
}
