#!/usr/bin/env bash
# Turns xatm-bench's summary CSV (mode,threads,tps,...) into an SVG bar chart:
# transactions per second per mode, grouped by thread count.
set -euo pipefail
awk -F, '
NR == 1 { next }
{
  mode[NR] = $1; thr[NR] = $2; tps[NR] = $3; n = NR
  if (!($1 in mi)) { modes[++nm] = $1; mi[$1] = nm }
  if (!($2 in ti)) { threads[++nt] = $2; ti[$2] = nt }
  v[$1, $2] = $3
  if ($3 > max) max = $3
}
END {
  nc = split("#4e79a7 #f28e2b #59a14f #e15759 #76b7b2 #edc948 #b07aa1 #ff9da7 #9c755f #bab0ac #17becf #8c564b", color, " ")
  L = 70; T = 40; ph = 320; bw = 22; gap = 40
  gw = nm * bw + gap
  rows = int((nm + 3) / 4)                  # legend rows, four modes each
  W = L + 20 + nt * gw; if (W < 900) W = 900
  H = T + ph + 40 + rows * 18 + 8
  printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
  printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
  printf "<text x=\"%d\" y=\"22\" font-size=\"15\">Transfers per second: one UPDATE on each database (median round)</text>\n", L
  for (k = 0; k <= 4; k++) {
    y = T + ph - k * ph / 4
    printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, W - 20, y, y
    printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", L - 6, y + 4, max * k / 4
  }
  for (t = 1; t <= nt; t++) {
    x0 = L + 20 + (t - 1) * gw
    for (m = 1; m <= nm; m++) {
      val = v[modes[m], threads[t]] + 0
      h = max > 0 ? val / max * ph : 0
      printf "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>%s, %s threads: %.0f tx/s</title></rect>\n", x0 + (m - 1) * bw, T + ph - h, bw - 3, h, color[(m - 1) % nc + 1], modes[m], threads[t], val
    }
    printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s thread%s</text>\n", x0 + nm * bw / 2, T + ph + 18, threads[t], threads[t] == 1 ? "" : "s"
  }
  for (m = 1; m <= nm; m++) {
    lx = L + ((m - 1) % 4) * 190; ly = T + ph + 34 + int((m - 1) / 4) * 18
    printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n", lx, ly, color[(m - 1) % nc + 1], lx + 16, ly + 10, modes[m]
  }
  print "</svg>"
}' "$1"
