"""Stragglers that are real: the hosts that measure slower than their peers by more than
noise explains, and how sure that is. Pure functions: the report calls them.

A host's figure (the train check's samples/s, the all_reduce busbw at the largest size)
comes from its node as a few repeats, the timed windows of one run (validation/node/workloads).
Hosts are compared only with their peers, the hosts of one group the caller names (target
kind and chip, e.g. "ssh/910b"): an image run in a container on the controller is not a
node, nor is a 310P a 910B.

The comparison is of logarithms: a throughput's noise and its faults scale it (a share of
a CPU, a slower link), so hosts differ by ratios, as the margin does. In logs a host at
half speed and one at double speed lie equally far from the median, and a slow host's
distance is not capped at the median itself. Per figure and peer group of at least
MIN_PEERS hosts, all in natural logs of the figure:

  v  a host's value: the median of its repeats (one disturbed window does not move it)
  M  the group's median of the hosts' values
  S  the group's robust spread: MAD_TO_SD x the median absolute deviation (MAD) of the
     values from M (0.05 is about 5 % of the median). It estimates the standard deviation
     of normal data and is not moved by up to half the hosts being off, where the standard
     deviation is inflated by the very straggler it should expose (Leys et al. 2013,
     "Detecting outliers: Do not use standard deviation around the mean, use absolute
     deviation around the median", J. Exp. Soc. Psychol. 49(4):764-766; NIST/SEMATECH
     e-Handbook of Statistical Methods, 1.3.5.17 "Detection of Outliers")
  e  the host's own noise: the standard error of the median of its n repeats,
     MEDIAN_SE x MAD_TO_SD x MAD(repeats) / sqrt(n); 0 for a single repeat
  z  (M - v) / sqrt(S^2 + e^2), at least MIN_SPREAD below: how many spreads the host lies
     below its group. With e = 0 it is Iglewicz and Hoaglin's modified z-score (the NIST
     section above); e added in quadrature keeps an erratic host, whose median is itself
     uncertain, from being judged as if that median were exact.

A host is a straggler when it is below the group's median by more than the margin AND
z > Z_LIMIT: slower by as much as the operator cares about, and by more than the fleet's
noise and its own explain. Only slower: a fast host is no finding.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

# Fewer hosts than this in a group give no verdict. With 3, the MAD is the gap between the
# median host and its nearer neighbour alone (the median's own deviation is 0): two hosts
# that happen to agree make the third an outlier whatever the truth. From 4 on, the MAD
# takes in a third host's distance, and one straggler is a minority that moves neither
# the median nor the MAD.
MIN_PEERS = 4
# A straggler lies more than this many robust spreads below its group's median: 3.5 is
# Iglewicz and Hoaglin's limit for the modified z-score (NIST 1.3.5.17); Leys et al. call
# 3 "very conservative". A false straggler costs an operator a node's time.
Z_LIMIT = 3.5
# The MAD times this estimates the standard deviation of normal data (1 / 0.6745, the
# standard normal's 0.75 quantile: Leys et al. 2013).
MAD_TO_SD = 1.4826
# The median of n normal measurements varies sqrt(pi / 2) times as much as their mean: its
# standard error is MEDIAN_SE x sd / sqrt(n) (for large n; a fair guide at 5).
MEDIAN_SE = math.sqrt(math.pi / 2)
# The least spread (in logs: about 1 % of the median): a timed window resolves no finer,
# and hosts that tie (MAD 0) must not divide by zero.
MIN_SPREAD = 0.01
# A verdict is "sure" when at least this many repeats were measured and every one is below
# the margin: the host was slow through its whole run, not in one passing moment.
SURE_REPEATS = 3
# The group of a host the caller gives none: such hosts are compared with one another.
UNGROUPED = "unknown kind"
SURE, LIKELY = "sure", "likely"


class Findings(NamedTuple):
    stragglers: list[dict]    # one per host and figure: see straggler()
    compared: list[dict]      # figure, group, hosts (a count), median, spread (S, in logs)
    not_compared: list[dict]  # figure, group, hosts (their names), reason


def measurements(repeats) -> list[float]:
    """The repeats that are measurements: positive finite numbers (a node's record is untrusted)."""
    return [float(x) for x in repeats if isinstance(x, (int, float)) and not isinstance(x, bool)
            and math.isfinite(x) and x > 0] if isinstance(repeats, (list, tuple)) else []


def robust_spread(values: list[float], centre: float) -> float:
    """MAD_TO_SD x the median absolute deviation of values from centre."""
    return MAD_TO_SD * statistics.median(abs(x - centre) for x in values)


def find(samples: dict[str, dict[str, list[float]]], peers: dict[str, str], margin: float, *,
         min_peers: int = MIN_PEERS) -> Findings:
    """The stragglers of each figure among their peers. ``samples``: figure -> host -> the host's
    repeats; ``peers``: host -> its peer group (hosts missing from it form UNGROUPED); ``margin``:
    the share below the group's median a straggler is at least. A group with fewer than
    ``min_peers`` hosts that measured the figure is listed in ``not_compared``, with the reason."""
    found, compared, not_compared = [], [], []
    for figure, by_host in samples.items():
        groups: dict[str, dict[str, list[float]]] = {}
        for host, repeats in by_host.items():
            values = measurements(repeats)
            if values:
                groups.setdefault(peers.get(host, UNGROUPED), {})[host] = values
        for group, hosts in sorted(groups.items()):
            if len(hosts) < min_peers:
                not_compared.append({"figure": figure, "group": group, "hosts": sorted(hosts),
                                     "reason": f"{len(hosts)} {group} host{'s' if len(hosts) > 1 else ''}, "
                                               f"fewer than {min_peers} to compare"})
                continue
            # Medians in the figure's unit (log is monotone: the log of a median is the median of the logs,
            # for an even count nearly), spreads in logs.
            value = {host: statistics.median(values) for host, values in hosts.items()}
            median = statistics.median(value.values())
            spread = robust_spread([math.log(v) for v in value.values()], math.log(median))
            compared.append({"figure": figure, "group": group, "hosts": len(hosts), "median": median,
                             "spread": spread})
            for host, values in sorted(hosts.items()):
                own = (MEDIAN_SE * robust_spread([math.log(x) for x in values], math.log(value[host]))
                       / math.sqrt(len(values)))
                combined = max(math.hypot(spread, own), MIN_SPREAD)
                z = math.log(median / value[host]) / combined
                if value[host] < median * (1 - margin) and z > Z_LIMIT:
                    found.append(straggler(host, figure, group, len(hosts), values, value[host], median, z,
                                           combined, margin))
    return Findings(found, compared, not_compared)


def straggler(host: str, figure: str, group: str, size: int, repeats: list[float], value: float, median: float,
              z: float, spread: float, margin: float) -> dict:
    """A straggler's finding: host, figure, value (the median of its repeats), median (its group's),
    ratio, peers (group and hosts, a count), z, spread (S and e combined, in logs), repeats, below
    (how many repeats are under the margin), confidence (SURE or LIKELY) and why, in plain words
    with the numbers."""
    line = median * (1 - margin)
    below = sum(1 for x in repeats if x < line)
    sure = len(repeats) >= SURE_REPEATS and below == len(repeats)
    why = (f"{below} of {len(repeats)} repeat{'s' if len(repeats) > 1 else ''} below {line:.4g} (the median of "
           f"{size} {group} hosts less {margin:.0%}); its median is {z:.1f} robust spreads below theirs "
           f"(a straggler from {Z_LIMIT})")
    if len(repeats) < SURE_REPEATS:
        why += f"; fewer than {SURE_REPEATS} repeats cannot tell a lasting slowness from a passing one"
    elif not sure:
        why += "; its other repeats reached its peers' range"
    return {"host": host, "figure": figure, "value": value, "median": median, "ratio": round(value / median, 3),
            "peers": {"group": group, "hosts": size}, "z": round(z, 2), "spread": spread, "repeats": repeats,
            "below": below, "confidence": SURE if sure else LIKELY, "why": why}
