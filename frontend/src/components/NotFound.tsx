import Link from "next/link";

export function NotFound({ what }: { what: string }) {
  return (
    <div data-testid="not-found" className="py-10 text-center">
      <h1 className="text-xl font-semibold">{what} not found</h1>
      <p className="mt-2 text-sm text-slate-700 dark:text-slate-300">
        It does not exist, or it belongs to a workspace you are not a member of.
      </p>
      <Link href="/" className="mt-4 inline-block text-indigo-700 hover:underline dark:text-indigo-300">
        Back to the dashboard
      </Link>
    </div>
  );
}
