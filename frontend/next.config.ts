import type { NextConfig } from "next";

// A static export: Django serves frontend/out at `/` (aggregator/frontend.py), so the app and the API share
// one origin and the session cookie. Detail pages take their id from the query string (/pipelines/view?id=3)
// because a static export cannot know every id at build time.
const config: NextConfig = {
  output: "export",
  images: { unoptimized: true },
  reactStrictMode: true,
  poweredByHeader: false,
  devIndicators: false,
};

export default config;
