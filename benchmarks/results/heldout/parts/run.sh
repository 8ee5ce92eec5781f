#!/bin/bash
# the whole held-out suite at one commit (git d113379), 20 seeds x 150 queries, once; nothing is chosen on it
cd /work/main
d=$1
python -m benchmarks.run --suite full --no-lm --agents ppo,ppo-frozen,ppo-noportfolio,ppo-scratch,local,greedy,evolution,tpe,random,uniform --datasets $d --nas-seeds 20 --nas-queries 150 --out /work/runs/heldout/$d > /work/runs/heldout/$d.log 2>&1
