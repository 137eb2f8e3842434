import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import { ApiError } from "@/api/client";
import type { ConnectorType } from "@/api/types";

import { ConnectorForm } from "./ConnectorForm";

// The shape pydantic gives the PostgreSQL type's config (trimmed): Optional secret, enum, $defs.
const postgres: ConnectorType = {
  slug: "postgres",
  title: "PostgreSQL",
  kind: "both",
  description: "",
  secret_fields: ["password"],
  config_schema: {
    $defs: { Mode: { enum: ["disable", "require"], title: "Mode", type: "string" } },
    additionalProperties: false,
    properties: {
      host: { title: "Host", type: "string", minLength: 1 },
      port: { title: "Port", type: "integer", default: 5432 },
      password: {
        anyOf: [{ format: "password", type: "string", writeOnly: true }, { type: "null" }],
        default: null,
        secret: true,
        title: "Password",
        writeOnly: true,
      },
      sslmode: { $ref: "#/$defs/Mode", default: "disable" },
      schema: { anyOf: [{ type: "string" }, { type: "null" }], default: null, title: "Schema" },
    },
    required: ["host"],
    title: "PostgresConfig",
    type: "object",
  },
};

describe("ConnectorForm (generated from the type's JSON Schema)", () => {
  it("renders labelled inputs, a password input for the secret and one input for an Optional field", () => {
    render(<ConnectorForm type={postgres} submitLabel="Create" onSubmit={vi.fn()} />);
    expect(screen.getByLabelText(/^Host/)).toHaveAttribute("type", "text");
    expect(screen.getByLabelText(/^Password/)).toHaveAttribute("type", "password");
    expect(screen.getByLabelText(/^Schema/)).toBeInTheDocument();
    expect(screen.queryByText(/Option 1/)).not.toBeInTheDocument();
    expect(screen.getByLabelText(/^Mode/).tagName).toBe("SELECT");
  });

  it("shows a stored secret as set, never its value, and keeps it when left empty", async () => {
    const onSubmit = vi.fn().mockResolvedValue(undefined);
    render(
      <ConnectorForm
        type={postgres}
        submitLabel="Save"
        initial={{ name: "warehouse", config: { host: "db", port: 5432, password: { is_set: true }, sslmode: "disable" } }}
        onSubmit={onSubmit}
      />,
    );
    const password = screen.getByLabelText(/^Password/);
    expect(password).toHaveValue("");
    expect(password).toHaveAttribute("placeholder", "set (leave empty to keep)");
    expect(screen.getByText(/This secret is set/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    const sent = onSubmit.mock.calls[0]![0];
    expect(sent).toEqual({ name: "warehouse", config: { host: "db", port: 5432, sslmode: "disable" } });
    expect(JSON.stringify(sent)).not.toContain("is_set");
  });

  it("sends a new secret when one is typed", async () => {
    const onSubmit = vi.fn().mockResolvedValue(undefined);
    render(<ConnectorForm type={postgres} submitLabel="Create" onSubmit={onSubmit} />);
    await userEvent.type(screen.getByLabelText(/^Name/), "wh");
    await userEvent.type(screen.getByLabelText(/^Host/), "db.example.com");
    await userEvent.type(screen.getByLabelText(/^Password/), "s3cret pass");
    await userEvent.click(screen.getByRole("button", { name: "Create" }));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    expect(onSubmit.mock.calls[0]![0].config).toMatchObject({ host: "db.example.com", password: "s3cret pass", port: 5432 });
  });

  it("checks the schema before sending: a required field is named at the field", async () => {
    const onSubmit = vi.fn();
    render(<ConnectorForm type={postgres} submitLabel="Create" onSubmit={onSubmit} />);
    await userEvent.type(screen.getByLabelText(/^Name/), "wh");
    await userEvent.click(screen.getByRole("button", { name: "Create" }));
    expect(await screen.findByText(/must have required property 'host'/i)).toBeInTheDocument();
    expect(onSubmit).not.toHaveBeenCalled();
  });

  it("shows the server's field errors at their fields", async () => {
    const onSubmit = vi.fn().mockRejectedValue(
      new ApiError(400, {
        code: "validation_error",
        message: "config.host: Not allowed.",
        fields: { "config.host": ["Internal addresses are not allowed."], name: ["Taken."] },
      }),
    );
    render(<ConnectorForm type={postgres} submitLabel="Create" onSubmit={onSubmit} />);
    await userEvent.type(screen.getByLabelText(/^Name/), "wh");
    await userEvent.type(screen.getByLabelText(/^Host/), "10.0.0.1");
    await userEvent.click(screen.getByRole("button", { name: "Create" }));
    expect(await screen.findByText("Internal addresses are not allowed.")).toBeInTheDocument();
    expect(screen.getByText("Taken.")).toBeInTheDocument();
  });
});
