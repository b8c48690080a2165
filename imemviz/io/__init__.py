"""Files: scripts and recordings, state files, diffs.  Never imports Qt.

The submodules are imported where they are used (`imemviz.io.script`,
`imemviz.io.recording`, ...), so that reading a script does not pull in the
state-file machinery.
"""
