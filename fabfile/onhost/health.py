"""Wait until every URL answers 2xx or 3xx, or fail naming the ones that do not.

Usage: python3 -c SOURCE TIMEOUT_SECONDS [URL ...], or the URLs one per line on stdin
(so that a URL with a token never shows in the process list).  Polls five times a
second, at most TIMEOUT_SECONDS in all; prints one JSON document {url: seconds or error}.
"""
import json
import sys
import time
import urllib.error
import urllib.request

timeout, urls = float(sys.argv[1]), sys.argv[2:] or [line.strip() for line in sys.stdin if line.strip()]
started = time.monotonic()
answered, errors = {}, {}
while len(answered) < len(urls) and time.monotonic() - started < timeout:
    for url in urls:
        if url in answered:
            continue
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status < 400:
                    answered[url] = round(time.monotonic() - started, 2)
                    continue
                errors[url] = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            errors[url] = f"HTTP {error.code}"
        except Exception as error:  # refused, reset, timeout: keep polling
            errors[url] = str(getattr(error, "reason", error))
    if len(answered) < len(urls):
        time.sleep(0.2)
failed = {url: errors.get(url, "no answer") for url in urls if url not in answered}
print(json.dumps({"answered": answered, "failed": failed}))
sys.exit(1 if failed else 0)
