#!/bin/bash
# held-out runs, once, after the decision (git 077642d)
cd /work/main
for d in "$@"; do
  python -m benchmarks.run --suite full --no-lm --agents ppo,ppo-frozen,local+portfolio,random+portfolio,greedy+portfolio,evolution+portfolio,tpe+portfolio --datasets $d --nas-seeds 20 --nas-queries 150 --out /work/runs/pfh/$d > /work/runs/pfh/$d.log 2>&1
done
