"""Real traces in: kernel (ftrace, trace-cmd, perf) and QEMU trace text read into an
observed timeline (contract section 6).

- `formats`: the table of event formats, one row per event and kernel/QEMU variant;
- `framing`: the line framings (tracefs `trace`, `trace-cmd report`, `perf script`,
  QEMU's log and ftrace backends) that carry those events;
- `reader`: bounded, streaming reading of files (and trace.dat through trace-cmd),
  merged by time;
- `decode`: SPTE values and page-fault error codes per vendor;
- `observed`: what the trace tells about the VM, updated event by event;
- `timeline`: the observed timeline file (OUT) and its reader for the app;
- `importer`: `imemviz import`;
- `model_check`: the trace's uAPI ops run through the engine, disagreements marked;
- `kernel_export`: the model's own events printed as kernel and QEMU trace lines;
- `perfetto_export`: sessions and observed timelines as Perfetto traces.

Nothing here imports Qt.
"""
