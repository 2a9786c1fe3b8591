"""What a person reads: the printed tables, Markdown reports and figures of runs, ablations and
robustness sweeps. These modules format results the experiments computed; they compute nothing
and import no experiment."""
