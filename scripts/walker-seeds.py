#!/usr/bin/env python3
"""Writes the seeds of the `walker` fuzz target (fuzz/seeds/walker/) from the frame fixtures.

    scripts/walker-seeds.py [OUT=fuzz/seeds/walker]

The walker target reads two control bytes and then a WebSocket byte stream
(fuzz/fuzz_targets/walker.rs): byte 0 is the sender (bit 0: 1 = client), hold mode (bit 1)
and the seed of the read cuts (bits 2..8); byte 1 bounds the cuts' length. Each fixture of
tests/fixtures/responses-ws/ gives four streams, each ended by a close 1000:

- NAME-up: the upstream's messages as unmasked text frames;
- NAME-up-frag: the same, each message cut into three fragments, a ping before each
  message and one between its first two fragments, 16-bit lengths where a piece is long;
- NAME-client: the client's messages as masked text frames;
- NAME-client-hold: the same in hold mode, fragmented, with a ping inside each message.

Runs of `response.*.delta` events past the first two are left out: the walker sees the
same frame shape each time, and smaller seeds fuzz faster. Deterministic (mask keys come
from a counter), so running it again writes the same files; `tests/fuzz_seeds.rs` checks
that, and walks every seed with the real walker. Python 3 standard library only.
"""

import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "responses-ws"
TEXT, CONT, CLOSE, PING = 0x1, 0x0, 0x8, 0x9


class Masks:
    """Mask keys from a counter: deterministic, and no two frames of a seed alike."""

    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return struct.pack(">I", (self.n * 0x9E3779B1) & 0xFFFFFFFF)


def frame(opcode, payload, fin=True, masks=None):
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masks else 0
    n = len(payload)
    if n <= 125:
        head.append(mask_bit | n)
    elif n <= 0xFFFF:
        head.append(mask_bit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack(">Q", n)
    if not masks:
        return bytes(head) + payload
    key = masks.next()
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def thirds(payload):
    a, b = len(payload) // 3, 2 * len(payload) // 3
    return payload[:a], payload[a:b], payload[b:]


def stream(messages, fragmented, masks):
    out = bytearray()
    for i, msg in enumerate(messages):
        if not fragmented:
            out += frame(TEXT, msg, masks=masks)
            continue
        ping = f"p{i}".encode()
        out += frame(PING, ping, masks=masks)
        first, middle, last = thirds(msg)
        out += frame(TEXT, first, fin=False, masks=masks)
        out += frame(PING, ping, masks=masks)
        out += frame(CONT, middle, fin=False, masks=masks)
        out += frame(CONT, last, masks=masks)
    out += frame(CLOSE, struct.pack(">H", 1000) + b"done", masks=masks)
    return bytes(out)


def lines(path):
    """The fixture's messages, runs of deltas cut to their first two."""
    kept, run = [], 0
    for line in path.read_bytes().splitlines():
        if not line:
            continue
        kind = json.loads(line).get("type", "")
        run = run + 1 if kind.endswith(".delta") else 0
        if run <= 2:
            kept.append(line)
    return kept


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds" / "walker"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for client_file in sorted(FIXTURES.glob("*.client.jsonl")):
        name = client_file.name.removesuffix(".client.jsonl")
        upstream = FIXTURES / f"{name}.upstream.jsonl"
        if name == "large" or not upstream.exists():
            # `large` (a ~1 MiB create) would raise libFuzzer's max_len for every input.
            continue
        up, client = lines(upstream), lines(client_file)
        seeds = {
            # (control byte: sender, hold, cut seed), cut length byte, stream
            f"{name}-up": (0 | 5 << 2, 63, stream(up, False, None)),
            f"{name}-up-frag": (0 | 9 << 2, 255, stream(up, True, None)),
            f"{name}-client": (1 | 3 << 2, 15, stream(client, False, Masks())),
            f"{name}-client-hold": (3 | 7 << 2, 127, stream(client, True, Masks())),
        }
        for seed, (ctl, limit, data) in seeds.items():
            (out / seed).write_bytes(bytes([ctl, limit]) + data)
            written += 1
    print(f"{written} seeds in {out}")


if __name__ == "__main__":
    main()
