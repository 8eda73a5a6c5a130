"""``tcpfast bench``: tcpfast against the kernel's TCP, side by side, on this machine.

Its private network namespaces, veth pairs and ethtool-style switches come from
:mod:`tcpfast.netns`.

* :mod:`tcpfast.bench.loss`: random packet loss on a device (an eBPF classifier; netem's job);
* :mod:`tcpfast.bench.impair`: the path impairer (:mod:`tcpfast._impair`, C) at work: its packet
  sockets, its thread, its measured ceiling;
* :mod:`tcpfast.bench.wan`: the WAN path (local end ⇄ impairer ⇄ peer), the same for both stacks;
* :mod:`tcpfast.bench.workloads`: the workloads, written once against ``socket.socket``'s API;
* :mod:`tcpfast.bench.worker`: one end of a workload in a process of its own;
* :mod:`tcpfast.bench.runner`: namespaces, workers and cases for one run;
* :mod:`tcpfast.bench.report`: the table, the JSON and the chart.
"""
