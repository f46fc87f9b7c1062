"""The modules of benchmarks/run.py, one concern each.

config       what is measured: the problem, a full and a quick run's sizes, the targets
measure      how a sample is taken: clocks, GC modes, interleaving, summaries, memory
engines      the model and its training step on every engine, from the same weights
handwritten  compiling benchmarks/handwritten.c and calling it through ctypes
workload     what a workload is (Workload) and what it gets (Context)
report       cells, the shared row formats, the table, the environment, printing, JSON
checks       the bit-for-bit checks (no row; their results feed rows 1r and 1c)
step         row 1 (and 1r, 1t, 1c): the moons training step
backward     row 2: backward() per node
build        row 3: building a graph from Python, per op
memory       row 4: bytes per op of a live chain
chain        row 5: long chains, build / backward / free per node
floor        row 6: the same loop on floats, compiled and reference Values (all GC off)
gpt_model    a character-level GPT over any Value class, and a plain __slots__ Value
gpt          row 7: training that GPT, forward / backward / update
compile_cost row 8: compile(loss) vs one eager build, later and first in a process, memory
optim_replay row 9: the optimizer in the replay, step() and the README's loop
two_graphs   row 10: two compiled graphs over the same parameters, alternated
cli          row 11: `cmicrograd train`'s default vs --eager and --compiled

benchmarks/run.py parses the options and runs the workloads it lists, in order.
"""
