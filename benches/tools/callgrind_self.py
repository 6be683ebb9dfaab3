"""Self cost per request of each function in an uncompressed callgrind file:
FILE REQUESTS [TOP]."""
import collections
import sys

path, n = sys.argv[1], float(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
cost = collections.Counter()
fn, skip_next = None, False
for line in open(path):
    if line.startswith("fn="):
        fn = line[3:].strip()
    elif line.startswith("calls="):
        skip_next = True  # the next cost line is the call's inclusive cost
    elif line[:1].isdigit() or line[:1] in "+-*":
        if skip_next:
            skip_next = False
            continue
        parts = line.split()
        if len(parts) >= 2:
            cost[fn] += int(parts[1])
total = sum(cost.values())
print(f"{total / n:.0f} instructions per request (user space, {int(n)} requests)")
for name, c in cost.most_common(top):
    print(f"{c / n:8.1f}  {name[:140]}")
