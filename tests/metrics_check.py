"""asu_ks_2samp against scipy.stats.ks_2samp (Debian's python3-scipy), on random samples of
equal and unequal sizes, with ties, through tests/ks_cli.

usage: /usr/bin/python3 metrics_check.py KS_CLI
Exits 77 (skipped) when scipy is missing."""

import random
import subprocess
import sys

try:
    from scipy import stats
except ImportError:
    print("scipy is not importable; run with /usr/bin/python3 (apt-get install python3-scipy)")
    sys.exit(77)


def main():
    cli = sys.argv[1]
    rng = random.Random(7)
    failures = 0
    cases = [(5, 5), (7, 3), (40, 40), (40, 37), (200, 200), (123, 45), (400, 400)]
    for n, m in cases:
        for shift in (0.0, 0.3, 1.0):
            x = [round(rng.gauss(0, 1), 2) for _ in range(n)]  # rounding makes ties
            y = [round(rng.gauss(shift, 1), 2) for _ in range(m)]
            text = " ".join(map(repr, x)) + "\n" + " ".join(map(repr, y)) + "\n"
            out = subprocess.run([cli], input=text, capture_output=True, text=True, check=True)
            d, p = map(float, out.stdout.split())
            want = stats.ks_2samp(x, y, method="exact")
            ok = abs(d - want.statistic) < 1e-12 and abs(p - want.pvalue) <= 1e-6 * want.pvalue
            print("%s: n %d m %d shift %.1f: D %.6f p %.6g (scipy D %.6f p %.6g)"
                  % ("ok" if ok else "FAIL", n, m, shift, d, p, want.statistic, want.pvalue))
            failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
