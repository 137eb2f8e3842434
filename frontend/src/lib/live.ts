"use client";

// One WebSocket to /ws/ for the whole tab. Screens subscribe to a channel ("workspace" or "run" + id); the
// server pushes {"type":"event","event":{type,payload,subject,...}}. When the socket is down, `useLive()`
// says so and screens fall back to polling, so nothing waits on a socket that never comes.

import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useSyncExternalStore } from "react";

export interface LiveEvent {
  id: number | null;
  type: string;
  workspace: number;
  subject: { type: string; id: string };
  payload: Record<string, unknown>;
  created_at: string | null;
}

type Channel = "workspace" | "run";
type Listener = (event: LiveEvent) => void;

class LiveConnection {
  private socket: WebSocket | null = null;
  private subscriptions = new Map<string, { channel: Channel; id: number; count: number }>();
  private listeners = new Set<Listener>();
  private statusListeners = new Set<() => void>();
  private retry = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closeTimer: ReturnType<typeof setTimeout> | null = null;
  connected = false;

  private setConnected(value: boolean) {
    this.connected = value;
    this.statusListeners.forEach((l) => l());
  }

  private ensure() {
    if (this.closeTimer) {
      clearTimeout(this.closeTimer);
      this.closeTimer = null;
    }
    if (this.socket || typeof window === "undefined" || typeof WebSocket === "undefined") return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.retry = 0;
      this.setConnected(true);
      for (const { channel, id } of this.subscriptions.values()) this.send({ type: "subscribe", channel, id });
    };
    socket.onmessage = (message) => {
      try {
        const data = JSON.parse(String(message.data)) as { type?: string; event?: LiveEvent };
        if (data.type === "event" && data.event) this.listeners.forEach((l) => l(data.event as LiveEvent));
      } catch {
        // not ours to understand
      }
    };
    socket.onclose = () => {
      this.socket = null;
      this.setConnected(false);
      if (this.subscriptions.size === 0) return;
      // Back off to 30 s: a server without /ws/ (or a restart) must not be hammered.
      const delay = Math.min(30_000, 1000 * 2 ** this.retry++);
      this.timer = setTimeout(() => this.ensure(), delay);
    };
  }

  private send(message: unknown) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  subscribe(channel: Channel, id: number): () => void {
    const key = `${channel}:${id}`;
    const existing = this.subscriptions.get(key);
    if (existing) existing.count++;
    else {
      this.subscriptions.set(key, { channel, id, count: 1 });
      this.send({ type: "subscribe", channel, id });
    }
    this.ensure();
    return () => {
      const entry = this.subscriptions.get(key);
      if (!entry) return;
      if (--entry.count === 0) {
        this.subscriptions.delete(key);
        this.send({ type: "unsubscribe", channel, id });
      }
      if (this.subscriptions.size === 0 && !this.closeTimer) {
        // Navigating between screens unsubscribes and subscribes again at once: keep the socket a moment
        // rather than closing and reopening it on every page.
        this.closeTimer = setTimeout(() => {
          this.closeTimer = null;
          if (this.subscriptions.size > 0) return;
          if (this.timer) clearTimeout(this.timer);
          this.socket?.close();
        }, 5000);
      }
    };
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: () => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }
}

export const live = new LiveConnection();

/** Whether live updates arrive now (else screens poll). */
export function useLive(): boolean {
  return useSyncExternalStore(
    (cb) => live.onStatus(cb),
    () => live.connected,
    () => false,
  );
}

export function useLiveEvents(channel: Channel, id: number | null, onEvent: Listener) {
  useEffect(() => {
    if (id === null) return;
    const off = live.on((event) => {
      if (channel === "workspace" ? event.workspace === id : event.subject.type === "run" && Number(event.subject.id) === id)
        onEvent(event);
    });
    const unsubscribe = live.subscribe(channel, id);
    return () => {
      off();
      unsubscribe();
    };
  }, [channel, id, onEvent]);
}

/** Workspace events refresh what they change: runs, pipelines, the dashboard, connectors. */
export function useWorkspaceLive(workspaceId: number) {
  const client = useQueryClient();
  useEffect(() => {
    const off = live.on((event) => {
      if (event.workspace !== workspaceId || event.type === "run.progress") return;
      const [kind] = event.type.split(".");
      if (kind === "run" || kind === "pipeline") {
        void client.invalidateQueries({ queryKey: ["runs"] });
        void client.invalidateQueries({ queryKey: ["pipelines"] });
        void client.invalidateQueries({ queryKey: ["pipeline"] });
        void client.invalidateQueries({ queryKey: ["dashboard"] });
      } else if (kind === "connector") {
        void client.invalidateQueries({ queryKey: ["connectors"] });
      } else if (kind === "schema") {
        void client.invalidateQueries({ queryKey: ["schema-changes"] });
        void client.invalidateQueries({ queryKey: ["connector-streams"] });
      }
    });
    const unsubscribe = live.subscribe("workspace", workspaceId);
    return () => {
      off();
      unsubscribe();
    };
  }, [client, workspaceId]);
}
