"""Redaction benchmark: recall and precision per detector on a generated fixture, and throughput.

    uv run python benchmarks/redaction.py [--per-detector 400] [--logs 300]

Fixture: for each detector, --per-detector values in the formats people write them (e-mail
addresses, card numbers of each issuer grouped or not, phone numbers in international, national and
North American forms, IPv4 and IPv6 addresses, and keys of every kind `secret` covers), each planted
in a sentence of the sample logs' document prose; plus as many sentences with look-alikes that must
stay (timestamps, model names, ids, hashes, versions, prices, dates, numbers, base64, paths, URLs).

Recall: planted values that are gone and replaced by their own detector's marker. Precision:
markers that replaced a planted value of that detector, over all markers of that detector.

Throughput: the run as build_run redacts it (raw JSON log, record, check details) on sample logs
of 5, 30 and 90 KB, with REDACT's default (secret) and with all; on logs with nothing to redact
(one scan of the text) and on logs with one value each (the JSON is parsed, walked and written).
Prints, never asserts.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_monitoring.core.evaluation import evaluate_run  # noqa: E402
from llm_monitoring.core.parsing import parse_log_bytes  # noqa: E402
from llm_monitoring.core.redaction import DETECTOR_NAMES, Redactor, redact_run  # noqa: E402
from llm_monitoring.samples import PROFILES, document_text, make_run_log  # noqa: E402

ALPHANUMERIC = string.ascii_letters + string.digits


def token(rng: random.Random, length: int, alphabet: str = ALPHANUMERIC) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


# ---------------------------------------------------------------------------- planted values


def email(rng: random.Random) -> str:
    first, last = token(rng, rng.randint(2, 9), string.ascii_lowercase), token(rng, rng.randint(2, 10), string.ascii_lowercase)
    local = rng.choice([f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first}_{last}", f"{first}+{last}", first, f"{first}-{last}"])
    labels = [token(rng, rng.randint(2, 10), string.ascii_lowercase + string.digits) for _ in range(rng.randint(1, 3))]
    tld = rng.choice(["com", "org", "net", "io", "de", "co.uk", "fr", "dev", "ai", "info"])
    return f"{local if rng.random() > 0.2 else local.capitalize()}@{'.'.join(labels)}.{tld}"


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = int(character)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return digits + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    kind = rng.choice(["visa", "visa", "mastercard", "mastercard2", "amex", "discover", "jcb"])
    if kind == "amex":
        number = luhn_complete(rng.choice(["34", "37"]), 15, rng)
        groups = [number[:4], number[4:10], number[10:]]
    else:
        prefix = {"visa": "4", "mastercard": str(rng.randint(51, 55)), "mastercard2": str(rng.randint(2221, 2720)), "discover": "6011"}.get(
            kind, "35"
        )
        number = luhn_complete(prefix, 16, rng)
        groups = [number[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([" ", "-", ""]).join(groups)


def phone(rng: random.Random) -> str:
    area, exchange, line = (
        f"{rng.randint(2, 9)}{rng.randint(0, 99):02d}",
        f"{rng.randint(2, 9)}{rng.randint(0, 99):02d}",
        f"{rng.randint(0, 9999):04d}",
    )
    form = rng.randrange(7)
    if form == 0:
        return f"+1 {area}-{exchange}-{line}"
    if form == 1:
        return f"({area}) {exchange}-{line}"
    if form == 2:
        return f"{area}.{exchange}.{line}"
    if form == 3:
        return f"{area}-{exchange}-{line}"
    if form == 4:
        return f"+44 {rng.randint(20, 79)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
    if form == 5:
        return f"+49 {rng.randint(30, 89)} {rng.randint(100000, 99999999)}"
    return f"0{rng.randint(20, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        start = rng.randint(1, 5)
        return ":".join(groups[:start]) + "::" + ":".join(groups[start + 2 :])
    return ":".join(groups)


def secret(rng: random.Random) -> str:
    url_safe = ALPHANUMERIC + "-_"
    kind = rng.randrange(11)
    if kind == 0:
        return f"sk-proj-{token(rng, 48, url_safe)}"
    if kind == 1:
        return f"sk-{token(rng, 48)}"
    if kind == 2:
        return f"sk-ant-api03-{token(rng, 93, url_safe)}AA"
    if kind == 3:
        return rng.choice(["AKIA", "ASIA"]) + token(rng, 16, string.ascii_uppercase + string.digits)
    if kind == 4:
        return f"ghp_{token(rng, 36)}"
    if kind == 5:
        return f"github_pat_{token(rng, 22)}_{token(rng, 59)}"
    if kind == 6:
        return f"AIza{token(rng, 35, url_safe)}"
    if kind == 7:
        return f"xoxb-{rng.randint(10**11, 10**12)}-{rng.randint(10**12, 10**13)}-{token(rng, 24)}"
    if kind == 8:

        def part(payload: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': token(rng, 8), 'iat': rng.randint(10**9, 2 * 10**9)})}.{token(rng, 43, url_safe)}"
    if kind == 9:
        body = "\n".join(token(rng, 64, ALPHANUMERIC + "+/") for _ in range(rng.randint(3, 8)))
        label = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
        return f"-----BEGIN {label}PRIVATE KEY-----\n{body}\n-----END {label}PRIVATE KEY-----"
    return f"aws_secret_access_key = {token(rng, 40, ALPHANUMERIC + '/+')}"


GENERATORS = {"email": email, "card": card, "phone": phone, "ip": ip, "secret": secret}


# ---------------------------------------------------------------------------- look-alikes that must stay


def look_alike(rng: random.Random) -> str:
    moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999999))
    choices = [
        moment.isoformat(),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        rng.choice(["gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20241022", "gemini-2.5-flash", "llama-3.3-70b-versatile"]),
        f"resp_{rng.getrandbits(64):016x}",
        f"call_{rng.getrandbits(64):016x}",
        f"{rng.getrandbits(128):032x}",
        f"{rng.getrandbits(256):064x}",
        f"{rng.randint(0, 20)}.{rng.randint(0, 40)}.{rng.randint(0, 200)}",
        f"${rng.randint(1, 99_999):,}.{rng.randint(0, 99):02d}",
        f"order #{rng.randint(1000, 99999)}",
        str(rng.randint(10**5, 10**11)),
        f"{rng.random():.16f}",
        base64.b64encode(rng.randbytes(24)).decode(),
        f"/home/{token(rng, 6, string.ascii_lowercase)}/{token(rng, 8, string.ascii_lowercase)}.json",
        f"https://example.org/docs/{token(rng, 10, string.ascii_lowercase)}?page={rng.randint(1, 40)}",
        f"{rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}",
        f"{rng.randint(1, 120):,} 000 tokens",
        f"@{token(rng, 7, string.ascii_lowercase)}",
        f"task-{token(rng, 6, string.ascii_lowercase)}-{token(rng, 8, string.ascii_lowercase)}",
        f"uuid {rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}",
    ]
    return rng.choice(choices)


def sentence(rng: random.Random, value: str) -> str:
    prose = document_text(str(rng.random()), rng.randint(80, 300))
    cut = rng.randrange(len(prose))
    before, after = rng.choice(BEFORE), rng.choice(AFTER)
    return f"{prose[:cut]} {before}{value}{after} {prose[cut:]}"


BEFORE = ("", "contact: ", "use ", "(", '"', "\n")
AFTER = ("", ".", ",", ")", '"', ";", "\n")


def accuracy(per_detector: int, seed: int) -> None:
    rng = random.Random(seed)
    redactor = Redactor.of(DETECTOR_NAMES)
    found = Counter[str]()
    markers = Counter[str]()
    correct = Counter[str]()
    for name, generate in GENERATORS.items():
        for _ in range(per_detector):
            value = generate(rng)
            counts: Counter[str] = Counter()
            text = redactor.text(sentence(rng, value), counts) or ""
            markers.update(counts)
            if value not in text and counts[name]:
                found[name] += 1
                correct[name] += 1
    false_alarms: list[str] = []
    for _ in range(per_detector * len(GENERATORS)):
        value = look_alike(rng)
        counts = Counter()
        redactor.text(sentence(rng, value), counts)
        markers.update(counts)
        if counts:
            false_alarms.append(f"{value!r} -> {dict(counts)}")
    print(f"accuracy: {per_detector} planted values per detector, {per_detector * len(GENERATORS)} look-alike sentences, seed {seed}")
    print(f"  {'detector':<8} {'recall':>8} {'precision':>10}   (planted found / markers)")
    for name in GENERATORS:
        precision = correct[name] / markers[name] if markers[name] else 1.0
        print(
            f"  {name:<8} {found[name] / per_detector:>8.2%} {precision:>10.2%}   ({found[name]}/{per_detector}, {markers[name]} markers)"
        )
    print(f"  look-alikes redacted: {len(false_alarms)}" + "".join(f"\n    {alarm}" for alarm in false_alarms[:8]))


# ---------------------------------------------------------------------------- throughput


def throughput(count: int, seed: int) -> None:
    rng = random.Random(seed)
    started = datetime(2026, 1, 5, 9, tzinfo=UTC)
    clean, planted = [], []
    for index in range(count):
        log = make_run_log(rng, started + timedelta(minutes=index), size_kb=(5, 30, 90)[index % 3], profile=PROFILES[index % len(PROFILES)])
        clean.append(json.dumps(log, indent=2).encode())
        log["messages"][0]["parts"][0]["content"] += f" (reach me at {email(rng)}, key {secret(rng)})"
        planted.append(json.dumps(log, indent=2).encode())
    megabytes = sum(map(len, clean)) / 1e6
    print(f"throughput: {count} sample logs of 5/30/90 KB, {megabytes:.1f} MB, as build_run redacts them")
    for label, logs in (("nothing to redact", clean), ("one e-mail and one key each", planted)):
        parsed = [(text, record, evaluate_run(record)) for text, record in (parse_log_bytes(raw) for raw in logs)]
        for setting, names in (("secret", ("secret",)), ("all", DETECTOR_NAMES)):
            redactor = Redactor.of(names)
            begin = time.perf_counter()
            for text, record, checks in parsed:
                redact_run(redactor, text, record, checks)
            elapsed = time.perf_counter() - begin
            print(
                f"  REDACT={setting:<6} {label:<28} {megabytes / elapsed:8.1f} MB/s  {count / elapsed:8.0f} logs/s  ({elapsed * 1000 / count:.2f} ms a log)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-detector", type=int, default=400, help="planted values per detector (at least 200)")
    parser.add_argument("--logs", type=int, default=300, help="sample logs for the throughput figures")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    accuracy(max(args.per_detector, 200), args.seed)
    throughput(args.logs, args.seed)


if __name__ == "__main__":
    main()
