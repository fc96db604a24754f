"""Selection: a pure function of the candidates' verdicts and the timings of one bench run. No I/O.

A record is a dict: id, kind (candidate, peer, baseline), status (built, reused, crashed, left-out, source),
ci / full (True, False or None: the parity verdicts on the ci and the full corpus), reason, p50 / p99 (workload ->
ms). A candidate that crashed or failed parity is never selected."""
from __future__ import annotations

BASELINE = "torch-eager-fp32"


def eligible(r: dict) -> bool:
    return r["kind"] == "candidate" and r.get("ci") is True and r.get("full") is not False


def ranked(records: list[dict], rank: str) -> list[dict]:
    """Candidates that passed the ci screen (and did not fail the full corpus), fastest first on `rank`."""
    rows = [r for r in records if eligible(r) and r.get("p50", {}).get(rank) is not None]
    return sorted(rows, key=lambda r: (r["p50"][rank], r["id"]))


def select(records: list[dict], rank: str) -> dict:
    """{winner, runner_up, ratio (runner-up p50 / winner p50), best_peer: {workload: (id, ratio)}, baseline ratios,
    losers: {id: why}}. The winner is the fastest candidate on `rank` that passed both parity corpora; None when
    no candidate did."""
    order = [r for r in ranked(records, rank) if r.get("full") is True]
    winner = order[0] if order else None
    runner = order[1] if len(order) > 1 else None
    out = {"rank": rank, "winner": winner["id"] if winner else None, "runner_up": runner["id"] if runner else None,
           "ratio_to_runner_up": runner["p50"][rank] / winner["p50"][rank] if runner else None,
           "best_peer": {}, "best_passing_peer": {}, "vs_baseline": {}, "losers": {}}
    if winner is None:
        out["losers"] = {r["id"]: why_lost(r, None, rank) for r in records if r["kind"] == "candidate"}
        return out
    workloads = list(winner["p50"])
    peers = [r for r in records if r["kind"] == "peer" and r.get("p50")]
    base = next((r for r in records if r["id"] == BASELINE and r.get("p50")), None)
    for w in workloads:
        timed = [p for p in peers if p["p50"].get(w) is not None]
        for key, pool in (("best_peer", timed), ("best_passing_peer", [p for p in timed if p.get("ci") is True])):
            if pool:
                best = min(pool, key=lambda p: (p["p50"][w], p["id"]))
                out[key][w] = {"id": best["id"], "p50_ms": best["p50"][w], "ratio": best["p50"][w] / winner["p50"][w]}
        if base and base["p50"].get(w) is not None:
            out["vs_baseline"][w] = base["p50"][w] / winner["p50"][w]
    out["losers"] = {r["id"]: why_lost(r, winner, rank) for r in records
                     if r["kind"] == "candidate" and r["id"] != winner["id"]}
    return out


def why_lost(r: dict, winner: dict | None, rank: str) -> str:
    if r.get("status") == "crashed":
        return f"crashed while building: {r.get('reason') or 'no message'}"
    if r.get("status") == "left-out":
        return f"not built: {r.get('reason') or 'left out'}"
    if r.get("ci") is False:
        return f"failed parity on the ci corpus: {r.get('reason') or 'see the parity report'}"
    if r.get("ci") is None:
        return f"not judged: {r.get('reason') or 'no verdict'}"
    if r.get("full") is False:
        return f"failed parity on the full corpus: {r.get('reason') or 'see the parity report'}"
    p = r.get("p50", {}).get(rank)
    if p is None:
        return "not timed"
    if winner is None:
        return "no candidate passed both corpora"
    return f"slower: {p / winner['p50'][rank]:.2f}x the winner's p50 on {rank}"


def targets(sel: dict, records: list[dict], rank: str, *, lead: float = 1.2, over_torch: float = 2.5) -> list[dict]:
    """The issue's speed targets judged on this run: at least as fast as every peer on every workload, >= `lead`
    x the best peer on the real-text rank workload and 1x128, >= `over_torch` x PyTorch eager fp32 at 1x128."""
    out = []
    if not sel["winner"]:
        return out
    bp = sel["best_peer"]
    worst = min(bp.items(), key=lambda kv: kv[1]["ratio"]) if bp else None
    out.append({"target": "as fast as every peer on every workload", "value": worst[1]["ratio"] if worst else None,
                "limit": 1.0, "passed": (worst[1]["ratio"] >= 1.0) if worst else None,
                "detail": f"lowest ratio: {worst[0]} vs {worst[1]['id']}" if worst else "no peer timed",
                "workload": worst[0] if worst else None, "peers": "all"})
    for w in dict.fromkeys([rank, "1x128"]):
        if w in bp:
            out.append({"target": f">= {lead}x the best peer on {w}", "value": bp[w]["ratio"], "limit": lead,
                        "passed": bp[w]["ratio"] >= lead, "detail": f"best peer {bp[w]['id']}", "workload": w,
                        "peers": "all"})
    fair = sel.get("best_passing_peer", {})
    if fair and fair != bp:  # some faster peer fails parity: the same bounds against the peers that pass it
        low = min(fair.items(), key=lambda kv: kv[1]["ratio"])
        out.append({"target": "as fast as every peer that passes parity, on every workload", "value": low[1]["ratio"],
                    "limit": 1.0, "passed": low[1]["ratio"] >= 1.0, "detail": f"lowest: {low[0]} vs {low[1]['id']}",
                    "workload": low[0], "peers": "passing"})
        for w in dict.fromkeys([rank, "1x128"]):
            if w in fair:
                out.append({"target": f">= {lead}x the best peer that passes parity on {w}", "value": fair[w]["ratio"],
                            "limit": lead, "passed": fair[w]["ratio"] >= lead, "detail": f"{fair[w]['id']}",
                            "workload": w, "peers": "passing"})
    if "1x128" in sel["vs_baseline"]:
        v = sel["vs_baseline"]["1x128"]
        out.append({"target": f">= {over_torch}x PyTorch eager fp32 at 1x128", "value": v, "limit": over_torch,
                    "passed": v >= over_torch, "detail": ""})
    return out
