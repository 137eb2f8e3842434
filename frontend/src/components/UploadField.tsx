"use client";

import { Upload } from "lucide-react";
import { useId, useState } from "react";

import { ApiError, uploadFile, type StoredUpload } from "@/api/client";

/** Sends a file to the server's import directory, with a progress bar; the connector then reads it. */
export function UploadField({ workspace, onUploaded }: { workspace: number | null; onUploaded: (upload: StoredUpload) => void }) {
  const id = useId();
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<StoredUpload | null>(null);
  return (
    <div className="mb-4 rounded-md border border-dashed border-slate-400 p-3 dark:border-slate-500">
      <label htmlFor={id} className="flex items-center gap-2 text-sm font-medium">
        <Upload aria-hidden className="size-4" /> Upload a file
      </label>
      <input
        id={id}
        type="file"
        aria-describedby={`${id}-status`}
        className="mt-1 block w-full text-sm file:mr-3 file:rounded-md file:border-0 file:bg-slate-200 file:px-3 file:py-1.5 dark:file:bg-slate-700"
        onChange={async (e) => {
          const file = e.target.files?.[0];
          if (!file) return;
          setError(null);
          setDone(null);
          setProgress(0);
          try {
            const stored = await uploadFile(file, workspace, setProgress);
            setDone(stored);
            onUploaded(stored);
          } catch (err) {
            setError(err instanceof ApiError ? (err.fields.file?.join(" ") ?? err.message) : String(err));
          } finally {
            setProgress(null);
          }
        }}
      />
      <div id={`${id}-status`} aria-live="polite" className="mt-2 text-sm">
        {progress !== null ? (
          <>
            <progress value={progress} max={1} aria-label="Upload progress" className="w-full" />
            <span>{Math.round(progress * 100)}%</span>
          </>
        ) : null}
        {done ? (
          <span data-testid="upload-done">
            Uploaded {done.original_name} ({done.size.toLocaleString("en")} bytes, {done.format}): the path is filled in below.
          </span>
        ) : null}
        {error ? <span className="text-red-700 dark:text-red-400">{error}</span> : null}
      </div>
    </div>
  );
}
