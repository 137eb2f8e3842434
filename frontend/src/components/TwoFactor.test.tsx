import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { ApiError } from "@/api/client";
import { stubApi } from "@/test/stubApi";

import { TwoFactor } from "./TwoFactor";

const get = vi.fn();
const post = vi.fn();

const off = { enabled: false, required: false, enrolment_required: false, enabled_at: null, last_used_at: null, recovery_codes_left: 0 };
const on = { ...off, enabled: true, enabled_at: "2026-01-02T03:04:05Z", recovery_codes_left: 10 };
const codes = ["aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd", "eeeeeeee", "ffffffff", "gggggggg", "hhhhhhhh", "iiiiiiii", "jjjjjjjj"];

const show = () =>
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <TwoFactor />
    </QueryClientProvider>,
  );

describe("two-factor authentication on the account page", () => {
  beforeEach(() => {
    get.mockReset();
    post.mockReset();
    stubApi({ get, post });
  });
  afterEach(() => vi.unstubAllGlobals());

  it("sets up an app: QR code and key, a wrong code at the field, then the recovery codes once", async () => {
    get.mockResolvedValue(off);
    show();
    const user = userEvent.setup();
    post.mockResolvedValueOnce({ secret: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", otpauth_uri: "otpauth://totp/x", qr_svg: "<svg xmlns='http://www.w3.org/2000/svg'/>", digits: 6, period: 30 });
    await user.click(await screen.findByRole("button", { name: "Set up two-factor authentication" }));
    expect(post).toHaveBeenCalledWith("auth/mfa/totp/");
    expect(await screen.findByRole("img", { name: "QR code of your new authenticator key" })).toHaveAttribute("src", expect.stringMatching(/^data:image\/svg\+xml/));
    expect(screen.getByTestId("mfa-secret")).toHaveTextContent("ABCD EFGH IJKL MNOP QRST UVWX YZ23 4567");
    const field = screen.getByLabelText("Code from the app");
    expect(field).toHaveAttribute("autocomplete", "one-time-code");
    expect(field).toHaveAttribute("inputmode", "numeric");

    post.mockRejectedValueOnce(new ApiError(400, { code: "validation_error", message: "otp: no", fields: { otp: ["This code is not right."] } }));
    await user.type(field, "000000");
    await user.click(screen.getByRole("button", { name: "Turn on" }));
    expect(await screen.findByText("This code is not right.")).toBeInTheDocument();
    expect(screen.getByLabelText("Code from the app")).toHaveAttribute("aria-invalid", "true");

    post.mockResolvedValueOnce({ recovery_codes: codes, status: on });
    await user.clear(screen.getByLabelText("Code from the app"));
    await user.type(screen.getByLabelText("Code from the app"), "123456");
    await user.click(screen.getByRole("button", { name: "Turn on" }));
    expect(post).toHaveBeenLastCalledWith("auth/mfa/totp/confirm/", { otp: "123456" });
    const list = await screen.findByRole("list", { name: "Recovery codes" });
    expect(within(list).getAllByRole("listitem").map((li) => li.textContent)).toEqual(codes);
    expect(screen.getByRole("button", { name: "Download" })).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "I have saved them" }));
    expect(screen.queryByRole("list", { name: "Recovery codes" })).toBeNull();
    expect(screen.getByTestId("mfa-on")).toHaveTextContent("10 of 10 recovery codes left");
  });

  it("asks a user the policy covers to set it up, and offers no way to turn it off once on", async () => {
    get.mockResolvedValueOnce({ ...off, required: true, enrolment_required: true });
    const { unmount } = show();
    expect(await screen.findByTestId("mfa-required")).toHaveTextContent("Your role requires two-factor authentication");
    unmount();

    get.mockResolvedValueOnce({ ...on, required: true });
    show();
    expect(await screen.findByRole("button", { name: "Make new recovery codes" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Turn off two-factor authentication" })).toBeNull();
  });

  it("turns it off with a code, the server's refusal at the field", async () => {
    get.mockResolvedValue(on);
    show();
    const user = userEvent.setup();
    const field = await screen.findByLabelText("Code to turn it off");
    post.mockRejectedValueOnce(new ApiError(400, { code: "validation_error", message: "otp: no", fields: { otp: ["Too many wrong codes."] } }));
    await user.type(field, "111111");
    await user.click(screen.getByRole("button", { name: "Turn off two-factor authentication" }));
    expect(await screen.findByText("Too many wrong codes.")).toBeInTheDocument();

    post.mockResolvedValueOnce(off);
    await user.clear(field);
    await user.type(field, "222222");
    await user.click(screen.getByRole("button", { name: "Turn off two-factor authentication" }));
    expect(post).toHaveBeenLastCalledWith("auth/mfa/disable/", { otp: "222222" });
    expect(await screen.findByRole("button", { name: "Set up two-factor authentication" })).toBeInTheDocument();
  });
});
