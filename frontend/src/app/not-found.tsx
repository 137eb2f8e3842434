import Link from "next/link";

// Served by Django (aggregator/frontend.py) with status 404 for any path the app does not have.
export default function NotFoundPage() {
  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="text-center">
        <h1 className="text-2xl font-semibold">Page not found</h1>
        <p className="mt-2 text-slate-700 dark:text-slate-300">There is no page at this address.</p>
        <Link href="/" className="mt-4 inline-block text-indigo-700 hover:underline dark:text-indigo-300">
          Go to the dashboard
        </Link>
      </div>
    </main>
  );
}
