import { describe, expect, it } from "vitest";

import { bytes, duration } from "./format";

describe("formatting", () => {
  it("writes durations in the largest sensible unit", () => {
    expect(duration(0.25)).toBe("250 ms");
    expect(duration(12.34)).toBe("12.3 s");
    expect(duration(125)).toBe("2 min 5 s");
    expect(duration(3 * 3600 + 120)).toBe("3 h 2 min");
    expect(duration(null)).toBe("—");
  });

  it("writes byte counts in binary units", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1536)).toBe("1.5 KB");
    expect(bytes(50 * 1024 * 1024)).toBe("50 MB");
  });
});
