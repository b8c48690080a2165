"""Dialogs: a form for any op (built from the contract's field specs) and the new-VM dialog.

Input is validated live with the same parser scripts use (`parse_op`,
`VMConfig.from_dict`): a bad or out-of-range value shows one clear line in
the dialog, OK stays disabled, and nothing typed is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from imemviz.io.plans import LayoutError, qemu_layout
from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.kernels import PROFILES
from imemviz.model.ops import REQUIRED, Op, OpError, op_fields, parse_op
from imemviz.model.units import parse_int

INT_KINDS = {"u32", "u64", "int", "loff_t", "byte", "vcpu"}
FIELD_HELP = {
    "slot": "Memslot id: (address space << 16) | slot number",
    "guest_phys_addr": "First guest physical address (page aligned), e.g. 0x100000000 or 4G",
    "memory_size": "Size in bytes (page aligned), e.g. 2G; 0 deletes the memslot",
    "userspace_addr": "The VMM's virtual address of the memory (page aligned)",
    "guest_memfd": "The guest_memfd file descriptor to bind (GUEST_MEMFD flag)",
    "guest_memfd_offset": "Offset of the memslot's first page inside the guest_memfd",
    "size": "Size in bytes (page aligned), e.g. 4G",
    "fd": "File descriptor",
    "pfn": "Host page frame number hit by the memory error",
    "gpa": "Guest physical address",
    "nr_pages": "Number of 4K pages",
    "value": "Byte written to the page (0-255)",
    "vcpu": "vCPU index",
}


def _error_and_buttons(dlg: QDialog, outer: QVBoxLayout) -> tuple[QLabel, QDialogButtonBox]:
    """The red validation line and OK/Cancel that every form dialog ends with."""
    error = QLabel("")
    error.setObjectName("error")
    error.setWordWrap(True)
    error.setStyleSheet("color: #b71c1c")
    outer.addWidget(error)
    buttons = QDialogButtonBox(
        QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
    )
    buttons.accepted.connect(dlg.accept)
    buttons.rejected.connect(dlg.reject)
    outer.addWidget(buttons)
    return error, buttons


class OpDialog(QDialog):
    """A form for one op; `op` holds the parsed op after the dialog is accepted."""

    def __init__(
        self,
        op_name: str,
        values: Mapping[str, Any] | None = None,
        *,
        title: str = "",
        intro: str = "",
        hidden: tuple[str, ...] = (),
        check: Callable[[Op], str | None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName(f"dialog_{op_name}")
        self.setWindowTitle(title or op_name)
        self.op_name = op_name
        self.op: Op | None = None
        self._check = check
        self._widgets: dict[str, Any] = {}
        self._hidden = {k: v for k, v in (values or {}).items() if k in hidden}
        values = dict(values or {})
        outer = QVBoxLayout(self)
        if intro:
            lab = QLabel(intro)
            lab.setWordWrap(True)
            outer.addWidget(lab)
        form = QFormLayout()
        outer.addLayout(form)
        for spec in op_fields(op_name):
            if spec.name in hidden:
                continue
            w = self._make(spec, values.get(spec.name, spec.default))
            form.addRow(spec.name, w)
        self.error, self.buttons = _error_and_buttons(self, outer)
        self.validate()

    # ---------------------------------------------------------------- widgets
    def _make(self, spec, value: Any) -> QWidget:
        name = spec.name
        tip = FIELD_HELP.get(name, f"{spec.kind} field of {self.op_name}")
        if spec.kind == "flags" and spec.flag_names:
            box = QWidget()
            row = QHBoxLayout(box)
            row.setContentsMargins(0, 0, 0, 0)
            bits = value if isinstance(value, int) and value is not REQUIRED else 0
            if isinstance(value, list):
                bits = sum(spec.flag_names[n] for n in value)
            checks = {}
            for flag, bit in spec.flag_names.items():
                cb = QCheckBox(flag)
                cb.setObjectName(f"field_{name}_{flag}")
                cb.setChecked(bool(bits & bit))
                cb.setToolTip(f"{flag} = {bit}")
                cb.toggled.connect(self.validate)
                row.addWidget(cb)
                checks[flag] = cb
            self._widgets[name] = ("flags", checks)
            box.setToolTip(tip)
            return box
        w: QWidget
        if spec.kind == "bool":
            cb = QCheckBox()
            cb.setChecked(bool(value))
            cb.toggled.connect(self.validate)
            w, kind = cb, "bool"
        elif spec.kind in ("bool?", "level", "advice"):
            choices: dict[str, list[tuple[str, object]]] = {
                "bool?": [("follow the attribute", None), ("private", True), ("shared", False)],
                "level": [("4K", "4K"), ("2M", "2M"), ("1G", "1G")],
                "advice": [("DONTNEED", "DONTNEED")],
            }
            options = choices[spec.kind]
            combo = QComboBox()
            for text, data in options:
                combo.addItem(text, data)
            if spec.kind == "level" and isinstance(value, int):
                value = {1: "4K", 2: "2M", 3: "1G"}.get(value, value)
            idx = next((i for i, (_t, d) in enumerate(options) if d == value), 0)
            combo.setCurrentIndex(idx)
            combo.currentIndexChanged.connect(self.validate)
            w, kind = combo, "combo"
        else:
            le = QLineEdit()
            if value is not REQUIRED and value is not None:
                le.setText(_text(spec, value))
            le.setPlaceholderText("e.g. 0x100000000, 4096 or 2M" if spec.kind in INT_KINDS else "")
            le.textChanged.connect(self.validate)
            w, kind = le, "text"
        w.setObjectName(f"field_{name}")
        w.setToolTip(tip)
        self._widgets[name] = (kind, w)
        return w

    def set_field(self, name: str, value: Any) -> None:
        """Fill a field as a user would (tests and callers that prefill)."""
        kind, w = self._widgets[name]
        if kind == "text":
            w.setText(str(value))
        elif kind == "bool":
            w.setChecked(bool(value))
        elif kind == "combo":
            w.setCurrentIndex(max(0, w.findData(value)))
        elif kind == "flags":
            names = set(value if isinstance(value, list | tuple | set) else [])
            for flag, cb in w.items():
                cb.setChecked(flag in names)

    def values(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": self.op_name}
        d.update(self._hidden)
        for name, (kind, w) in self._widgets.items():
            if kind == "text":
                t = w.text().strip()
                if t:
                    d[name] = _parse_text(t)
            elif kind == "bool":
                d[name] = w.isChecked()
            elif kind == "combo":
                if w.currentData() is not None:
                    d[name] = w.currentData()
            elif kind == "flags":
                d[name] = [flag for flag, cb in w.items() if cb.isChecked()]
        return d

    # ------------------------------------------------------------- validation
    def validate(self) -> bool:
        self.op = None
        for _kind, w in self._widgets.values():
            if isinstance(w, QLineEdit):
                w.setStyleSheet("")
        try:
            op = parse_op(self.values())
            problem = self._check(op) if self._check else None
            if problem:
                raise OpError(
                    problem.split(":", 1)[0] if ":" in problem else "op",
                    problem.split(":", 1)[-1].strip(),
                )
        except OpError as e:
            self.error.setText(f"{e.field}: {e.message}")
            _kind, w = self._widgets.get(e.field, (None, None))
            if isinstance(w, QLineEdit):
                w.setStyleSheet("border: 1px solid #b71c1c")
            self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
            return False
        self.op = op
        self.error.setText("")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)
        return True

    def accept(self) -> None:
        if self.validate():
            super().accept()


def _text(spec, value: Any) -> str:
    """A prefilled value as a script would spell it (hex addresses, sized sizes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(spec.dump(value))
    return str(value)


def _parse_text(t: str) -> Any:
    """Plain decimal stays an int; anything else goes to parse_op as the string it is."""
    if t.lstrip("-").isdigit():
        return int(t)
    return t


class NewVmDialog(QDialog):
    """VMCONFIG fields plus an optional QEMU-like RAM layout; `config` and `ops` after OK."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dialog_new_vm")
        self.setWindowTitle("New VM")
        self.config: dict[str, Any] | None = None
        self.ops: tuple[Op, ...] = ()
        form = QFormLayout()
        self.type = QComboBox()
        for t, tip in (
            (
                "tdx",
                "Intel TDX trust domain: private memory in guest_memfd, "
                "S-EPT with PENDING/MAPPED leaves",
            ),
            (
                "snp",
                "AMD SEV-SNP guest: private memory in guest_memfd, the RMP (launched with "
                "OVMF pages, then SNP_LAUNCH_FINISH)",
            ),
            (
                "sw_protected",
                "KVM_X86_SW_PROTECTED_VM: private memory without hardware protection (testing)",
            ),
            ("default", "A normal VM: no private memory"),
        ):
            self.type.addItem(t)
            self.type.setItemData(self.type.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.kernel = QComboBox()  # the kernel whose rules apply (docs/kernels.md)
        for k in PROFILES:
            self.kernel.addItem(k)
        self.host = QLineEdit("16G")
        self.order = QComboBox()
        for text, v in (
            ("0: 4K folios (upstream)", 0),
            ("9: 2M folios (huge-page series)", 9),
            ("18: 1G folios", 18),
        ):
            self.order.addItem(text, v)
        self.shared = QComboBox()
        for size in ("4K", "2M", "1G"):
            self.shared.addItem(size, size)
        self.tdx_level = QComboBox()
        for text, level in (("4K (upstream)", "4K"), ("2M (S-EPT huge-page series)", "2M")):
            self.tdx_level.addItem(text, level)
        self.gpaw = QComboBox()
        for v in (52, 48):
            self.gpaw.addItem(str(v), v)
        self.seed = QLineEdit("0")
        self.ram = QLineEdit("4G")
        self.finalize = QCheckBox("finalize the TD (TDH.MR.FINALIZE) so the guest can run")
        self.finalize.setChecked(True)
        tips = {
            self.type: "VM type (KVM_CREATE_VM type)",
            self.kernel: "The kernel whose uAPI and rules the VM follows: a release, or upm-v8 "
            "(the 2022 inaccessible-memfd design); see docs/kernels.md",
            self.host: "Host RAM the folio allocator manages, e.g. 16G",
            self.order: "gmem_max_order: the largest guest_memfd folio",
            self.shared: "Page size behind userspace_addr: 4K, 2M (THP) or 1G (hugetlb)",
            self.tdx_level: "The largest S-EPT leaf KVM maps for TD private memory",
            self.gpaw: "TDX guest physical address width (shared bit 51 or 47)",
            self.seed: "Seed of every allocation choice (same seed + ops = same state)",
            self.ram: "Guest RAM laid out as QEMU does: low RAM up to 2G at 0, the rest at "
            "4G, one guest_memfd, all private (0: no memslots)",
            self.finalize: "A TD must be finalized before its vCPUs run",
        }
        for w, tip in tips.items():
            w.setToolTip(tip)
        for label, w, name in (
            ("type", self.type, "type"),
            ("kernel", self.kernel, "kernel"),
            ("host memory", self.host, "host"),
            ("gmem_max_order", self.order, "order"),
            ("shared_page_size", self.shared, "shared"),
            ("tdx_private_max_level", self.tdx_level, "tdx_level"),
            ("gpaw", self.gpaw, "gpaw"),
            ("seed", self.seed, "seed"),
            ("guest RAM", self.ram, "ram"),
            ("", self.finalize, "finalize"),
        ):
            w.setObjectName(f"field_{name}")
            form.addRow(label, w)
        outer = QVBoxLayout(self)
        outer.addLayout(form)
        self.error, self.buttons = _error_and_buttons(self, outer)
        for w in (self.host, self.seed, self.ram):
            w.textChanged.connect(self.validate)
        for w in (self.type, self.kernel, self.order, self.shared, self.tdx_level, self.gpaw):
            w.currentIndexChanged.connect(self.validate)
        self.finalize.toggled.connect(self.validate)
        self.validate()

    def validate(self) -> bool:
        is_tdx = self.type.currentText() == "tdx"
        self.tdx_level.setEnabled(is_tdx)
        self.gpaw.setEnabled(is_tdx)
        self.finalize.setEnabled(is_tdx)
        cfg: dict[str, Any] = {
            "type": self.type.currentText(),
            "kernel": self.kernel.currentText(),
            "host_memory": self.host.text().strip(),
            "gmem_max_order": self.order.currentData(),
            "shared_page_size": self.shared.currentData(),
            "tdx_private_max_level": self.tdx_level.currentData(),
            "gpaw": self.gpaw.currentData(),
            "seed": self.seed.text().strip() or "0",
        }
        if cfg["seed"].isdigit():
            cfg["seed"] = int(cfg["seed"])
        try:
            config = VMConfig.from_dict(cfg)
            try:
                ram = parse_int(self.ram.text().strip() or "0")
            except ValueError as e:
                raise ConfigError("guest RAM", str(e)) from None
            if ram < 0 or ram % (2 << 20):
                raise ConfigError("guest RAM", "must be 0 or a positive multiple of 2M")
            if ram > (8 << 40):
                raise ConfigError("guest RAM", "at most 8T (a memslot holds < 2^31 pages)")
            ops = tuple(
                qemu_layout(
                    config.type, ram, finalize=self.finalize.isChecked(), kernel=config.kernel
                )
            )
        except (ConfigError, LayoutError) as e:
            if isinstance(e, ConfigError):
                self.error.setText(f"{e.path.removeprefix('vm.')}: {e.message}")
            else:
                self.error.setText(str(e))
            self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
            self.config = None
            return False
        self.config = config.to_dict()
        self.ops = ops
        self.error.setText("")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)
        return True

    def accept(self) -> None:
        if self.validate() and self._dry_run():
            super().accept()

    def _dry_run(self) -> bool:
        """Apply the layout to a scratch VM first: a layout the kernel would refuse is
        refused here, in the dialog, instead of leaving a smaller VM behind."""
        from imemviz.model.vm import VM

        assert self.config is not None
        vm = VM(VMConfig.from_dict(self.config))
        for op in self.ops:
            r = vm.apply(op)
            if not r.ok:
                self.error.setText(
                    f"guest RAM: the layout fails: {op.NAME} returns {r.errno}; "
                    "try less guest RAM or more host memory"
                )
                self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
                self.config = None
                return False
        return True
