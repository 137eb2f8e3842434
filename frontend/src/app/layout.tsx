import type { Metadata, Viewport } from "next";
import type { ReactNode } from "react";

import { Providers } from "@/components/Providers";
import "./globals.css";

export const metadata: Metadata = {
  title: { default: "Aggregator", template: "%s · Aggregator" },
  description: "Connect sources and destinations, build pipelines, run and watch them.",
};

export const viewport: Viewport = { width: "device-width", initialScale: 1 };

// The theme class is set before the first paint so a dark-theme user never sees a white flash.
const themeScript = `try{var t=JSON.parse(localStorage.getItem("aggregator-ui")||"{}").state?.theme||"system";if(t==="dark"||(t==="system"&&matchMedia("(prefers-color-scheme: dark)").matches))document.documentElement.classList.add("dark")}catch(e){}`;

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en" suppressHydrationWarning>
      <head>
        <script dangerouslySetInnerHTML={{ __html: themeScript }} />
      </head>
      <body className="min-h-screen antialiased">
        <Providers>{children}</Providers>
      </body>
    </html>
  );
}
