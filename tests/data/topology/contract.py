#!/usr/bin/env python3
"""Edits today's JSON logs into the form of issue 16's contract (node, node_name,
connection_id, bootstrap, classified reasons, connections_left, listen arrays,
numbers as numbers, a clean stop logging its own closes first)."""
import json, sys, os
src, dst = sys.argv[1], sys.argv[2]
names = ["seed1", "node2", "node3", "node4"]
logs = {n: [json.loads(l) for l in open(f"{src}/{n}.log")] for n in names}
ids = {n: next(l["peer_id"] for l in logs[n] if l.get("message") == "node started") for n in names}
boot = {"seed1": [], "node2": [ids["seed1"]], "node3": [ids["seed1"]], "node4": [ids["node2"]]}
# When each node was killed (SIGKILL: no lines) or began a clean stop.
killed = {}
for n in names:
    starts = [i for i, l in enumerate(logs[n]) if l.get("message") == "node started"]
    for s in starts[1:]:
        before = [l for l in logs[n][:s] if "message" in l]
        killed.setdefault(n, []).append((before[-1]["timestamp"], logs[n][s]["timestamp"]))
stopping = {n: next((l["timestamp"] for l in logs[n] if l.get("message") == "shutting down"), "9") for n in names}
by_id = {v: k for k, v in ids.items()}

def peer_state(peer, ts):
    n = by_id.get(peer)
    if n is None: return "?"
    for (last, restart) in killed.get(n, []):
        if last <= ts <= restart: return "killed"
    if ts >= stopping[n]: return "stopping"
    return "up"

def reorder(line, node):
    out = {k: line[k] for k in ("timestamp", "level", "target") if k in line}
    if "message" in line: out["message"] = line["message"]
    out["node"] = ids[node]; out["node_name"] = node
    for k, v in line.items():
        if k not in out: out[k] = v
    return out

os.makedirs(dst, exist_ok=True)
for n in names:
    out, counter, open_ = [], 0, []
    def close(conn, ts, reason):
        open_.remove(conn)
        left = sum(1 for c in open_ if c["peer"] == conn["peer"])
        return {"timestamp": ts, "level": "INFO", "target": "tinychain_node::p2p", "message": "connection closed",
                "peer": conn["peer"], "connection_id": conn["id"], "address": conn["address"],
                "direction": conn["direction"], "reason": reason, "connections_left": left}
    for l in logs[n]:
        m = l.get("message")
        if m == "node started":
            counter, open_ = 0, []
        if m == "connection established":
            counter += 1
            l["connection_id"] = counter
            l["bootstrap"] = l["peer"] in boot[n]
            open_.append({"peer": l["peer"], "address": l["address"], "direction": l["direction"], "id": counter})
        elif m == "connection closed":
            match = [c for c in open_ if (c["peer"], c["address"], c["direction"]) == (l["peer"], l["address"], l["direction"])]
            if not match:
                continue  # closed already, by this node's own clean stop
            state = peer_state(l["peer"], l["timestamp"])
            reason = {"killed": "io error: Connection reset by peer (os error 104)", "stopping": "peer closed"}.get(state, "peer closed")
            l = close(match[0], l["timestamp"], reason)
        elif m == "identify received" and isinstance(l.get("listen"), str):
            l["listen"] = [a.strip() for a in l["listen"].strip("[]").split(",") if a.strip()]
        elif m == "sync progress":
            l["blocks_per_s"] = float(l["blocks_per_s"])
        out.append(reorder(l, n))
        if m == "shutting down":
            for c in list(open_):
                out.append(reorder(close(c, l["timestamp"], "we closed: shutting down"), n))
    with open(f"{dst}/{n}.log", "w") as f:
        for l in out:
            f.write(json.dumps(l, separators=(",", ":")) + "\n")
