"""The gate of the user's swapper in test_root_safety.py's race, and the interpreter that opens it in a module.

The swapper spins only while root writes: the test keeps it stopped (SIGSTOP) and lets it run around the
writes. Run as a script, this is the modules' Python in the race's playbook:

    python racing_module.py SWAPPER_PID GATE_LOG ANSIBALLZ_FILE

runs the module as Python runs a script, under an audit hook: once AnsibleModule has its arguments and logs
"Invoked with ..." (just before the module's work, milliseconds of a process that spends most of its second
starting Python and importing), the swapper runs, and has been on a CPU before the module goes on; it stops
when the module returns or exits. GATE_LOG gets a line per invocation: "racing" ("idle" when the swapper got
no CPU) and the invocation's parameters.

Standard library only: Ansible's interpreter in the tests is a bare virtualenv.
"""

import os
import runpy
import signal
import sys
import time


def on_cpu(pid):
    """Nanoseconds the process has spent on a CPU."""
    with open("/proc/%d/schedstat" % pid, encoding="ascii") as schedstat:
        return int(schedstat.read().split()[0])


def run_swapper(pid, timeout=5):
    """Let the stopped swapper run; whether it has been on a CPU since (within `timeout` seconds)."""
    before = on_cpu(pid)
    os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while on_cpu(pid) == before:
        if time.monotonic() > deadline:
            return False
    return True


def stop_swapper(pid):
    os.kill(pid, signal.SIGSTOP)


def main():
    swapper, gate_log, module = int(sys.argv[1]), sys.argv[2], sys.argv[3]

    def race(event, args):
        if event == "syslog.syslog" and str(args[1]).startswith("Invoked with"):
            running = run_swapper(swapper)
            with open(gate_log, "a", encoding="utf-8") as log:
                log.write("%s %s\n" % ("racing" if running else "idle", args[1].replace("\n", " ")))

    sys.addaudithook(race)
    sys.argv = sys.argv[3:]
    sys.path[0] = os.path.dirname(os.path.abspath(module))  # as `python ANSIBALLZ_FILE` would have it
    try:
        runpy.run_path(module, run_name="__main__")
    finally:
        stop_swapper(swapper)


if __name__ == "__main__":
    main()
