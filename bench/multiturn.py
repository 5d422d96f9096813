#!/usr/bin/env python3
"""A growing conversation against an OpenAI-compatible server (tandem serve or
llama-server), on loopback: each turn sends the whole conversation so far plus a new user
turn, as chat clients do. Reports per turn the prompt length, the prompt tokens the server
processed again (tandem: prompt_tokens - cached_tokens; llama-server: timings.prompt_n) and
the turn's wall time. Uses /v1/completions with the conversation as text, so it runs on
models without a chat template (synthetic files) too.

    bench/multiturn.py --url http://127.0.0.1:8080 --turns 8 [--json out.json]
"""
import argparse
import json
import time

import httpx

from serverbench import require_loopback, wait_healthy


USER_TURNS = [
    "Tell me about the history of the lighthouse on the northern cape and who kept it running.",
    "How did the keepers get their supplies through the long winter months?",
    "What happened when the great storm of that decade hit the coast?",
    "Were there any famous rescues made by the keepers or their families?",
    "How did the arrival of electricity change the work at the station?",
    "When was the lighthouse automated, and what became of the keepers' houses?",
    "Can visitors climb the tower today, and what can they see from the top?",
    "Summarise everything we discussed in a few sentences.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--name", default="server")
    ap.add_argument("--json")
    a = ap.parse_args()
    require_loopback(a.url, "multiturn.py")
    wait_healthy(a.url)
    conversation = "A conversation between a curious user and a helpful assistant.\n"
    rows = []
    with httpx.Client(timeout=600) as h:
        for turn in range(a.turns):
            conversation += f"\nUser: {USER_TURNS[turn % len(USER_TURNS)]}\nAssistant:"
            t0 = time.time()
            r = h.post(a.url + "/v1/completions", json={"prompt": conversation, "max_tokens": a.max_tokens,
                                                        "temperature": 0, "cache_prompt": True})
            wall = time.time() - t0
            r.raise_for_status()
            j = r.json()
            reply = j["choices"][0]["text"]
            usage = j.get("usage", {})
            prompt = usage.get("prompt_tokens")
            if "timings" in j and "prompt_n" in j["timings"]:  # llama-server
                processed = j["timings"]["prompt_n"]
                prompt = prompt if prompt is not None else processed + j["timings"].get("cache_n", 0)
            else:
                processed = prompt - usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
            rows.append({"turn": turn + 1, "prompt_tokens": prompt, "processed": processed,
                         "generated": usage.get("completion_tokens"), "seconds": round(wall, 3)})
            print(json.dumps({"name": a.name, **rows[-1]}), flush=True)
            conversation += reply
    total = {"name": a.name, "turns": rows, "processed_total": sum(r["processed"] for r in rows),
             "seconds_total": round(sum(r["seconds"] for r in rows), 3)}
    print(json.dumps({k: v for k, v in total.items() if k != "turns"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(total, f, indent=1)


if __name__ == "__main__":
    main()
