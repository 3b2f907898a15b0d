"""Visualization: the module tree (parameter counts, dtypes, quantization per layer) as text,
an ExportedProgram ``.pt2`` that Model Explorer opens, and a self-contained HTML view.
``famous show-graph`` renders what this returns.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class ModuleRow:
    name: str  # dotted path ("" for the root)
    depth: int
    kind: str  # class name
    params: int  # parameters and weight buffers under this module
    own_params: int
    dtypes: list[str]
    quantization: str  # "fp32" / "int8-channel" / "int4-b32" … ("" when it holds none)
    shape: str  # the main weight's shape, if any


def _quant_label(module: nn.Module) -> str:
    spec = getattr(module, "spec", None)
    if spec is not None and hasattr(spec, "label"):
        return spec.label
    w = getattr(module, "weight", None)
    if isinstance(w, torch.Tensor):
        return str(w.dtype).removeprefix("torch.").replace("float", "fp")
    return ""


def _tensors(module: nn.Module, recurse: bool) -> list[torch.Tensor]:
    out = list(module.parameters(recurse=recurse))
    out += [b for b in module.buffers(recurse=recurse) if b is not None]
    seen, unique = set(), []
    for t in out:
        if id(t) not in seen:
            seen.add(id(t))
            unique.append(t)
    return unique


def module_tree(model: nn.Module, max_depth: int | None = None) -> list[ModuleRow]:
    """One row per module (depth-first), with parameter counts that count a tied weight once.
    RoPE tables (non-persistent buffers) are left out of the counts."""
    rows = []
    skip = {id(b) for m in model.modules() for b in getattr(m, "_buffers", {}).values()}
    skip -= {id(b) for b in model.state_dict(keep_vars=True).values()}
    for name, module in model.named_modules():
        depth = 0 if not name else name.count(".") + 1
        if max_depth is not None and depth > max_depth:
            continue
        tensors = [t for t in _tensors(module, True) if id(t) not in skip]
        own = [t for t in _tensors(module, False) if id(t) not in skip]
        w = getattr(module, "weight", None)
        if not isinstance(w, torch.Tensor):
            qw = getattr(module, "qweight", None)
            shape = str(list(qw.shape)) if qw is not None else ""
        else:
            shape = str(list(w.shape)) if not isinstance(module, nn.ModuleList) else ""
        rows.append(
            ModuleRow(
                name=name,
                depth=depth,
                kind=type(module).__name__,
                params=sum(t.numel() for t in tensors),
                own_params=sum(t.numel() for t in own),
                dtypes=sorted({str(t.dtype).removeprefix("torch.") for t in tensors}),
                quantization=_quant_label(module) if own or hasattr(module, "qweight") else "",
                shape=shape,
            )
        )
    return rows


def format_tree(rows: list[ModuleRow]) -> str:
    lines = [f"{'module':<44} {'type':<20} {'params':>12}  {'dtypes':<16} quant   shape"]
    for r in rows:
        label = "  " * r.depth + (r.name.rsplit(".", 1)[-1] if r.name else "(model)")
        lines.append(
            f"{label:<44} {r.kind:<20} {r.params:>12,}  {','.join(r.dtypes):<16} "
            f"{r.quantization:<7} {r.shape}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ graph


@dataclass
class GraphNode:
    name: str
    op: str
    target: str
    shape: str
    dtype: str
    args: list[str]


def graph_nodes(ep: torch.export.ExportedProgram) -> list[GraphNode]:
    out = []
    for n in ep.graph.nodes:
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            shape, dtype = str(list(val.shape)), str(val.dtype).removeprefix("torch.")
        elif isinstance(val, list | tuple):
            shape, dtype = f"{len(val)} values", ""
        else:
            shape, dtype = "", ""
        args = [a.name for a in n.all_input_nodes]
        out.append(GraphNode(n.name, n.op, str(n.target), shape, dtype, args))
    return out


def op_histogram(ep: torch.export.ExportedProgram) -> Counter:
    return Counter(str(n.target) for n in ep.graph.nodes if n.op == "call_function")


def export_graph(
    model: nn.Module, signature: str = "decode", composite: bool = True
) -> torch.export.ExportedProgram:
    """One signature of ``model`` as an ExportedProgram (composite ops kept as nodes)."""
    from famous.genai.export.signatures import DECODE, export_signatures

    if signature == DECODE:
        prog = export_signatures(model, (min(8, model.max_seq_len),), composite=composite)
    else:
        n = int(signature.removeprefix("prefill_"))
        prog = export_signatures(model, (n,), composite=composite)
    return prog.programs[signature]


def save_pt2(ep: torch.export.ExportedProgram, path: str | Path) -> Path:
    """``torch.export.save``: the file Model Explorer (``ai-edge-model-explorer``) opens.
    Loading it needs ``import famous.genai.ops`` first when it holds composite ops."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(path))
    return path


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
details{margin-left:1.2em}summary{cursor:pointer}
.k{color:#555}.p{color:#036;font-variant-numeric:tabular-nums}.q{color:#930}
table{border-collapse:collapse;font-size:12px}td,th{border-bottom:1px solid #ddd;padding:2px 6px;
text-align:left;vertical-align:top}tr.composite td{background:#fff4d6}
code{font-size:12px}input{margin:.5em 0;padding:3px;width:20em}
"""
_JS = """
function filt(v){v=v.toLowerCase();for(const r of document.querySelectorAll('#nodes tbody tr'))
{r.style.display=r.textContent.toLowerCase().includes(v)?'':'none'}}
"""


def render_html(
    title: str,
    rows: list[ModuleRow],
    ep: torch.export.ExportedProgram | None = None,
    signature: str = "",
) -> str:
    """A single HTML file (no external assets): the collapsible module tree and, with an
    exported program, the op histogram and every graph node (composite ops highlighted)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_CSS}</style><script>{_JS}</script></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    total = rows[0].params if rows else 0
    parts.append(f"<p>{total:,} parameters</p><h2>Modules</h2>")

    def node_label(r: ModuleRow) -> str:
        name = r.name.rsplit(".", 1)[-1] if r.name else "(model)"
        q = f" <span class=q>{e(r.quantization)}</span>" if r.quantization else ""
        shape = f" <code>{e(r.shape)}</code>" if r.shape else ""
        return (
            f"<b>{e(name)}</b> <span class=k>{e(r.kind)}</span> "
            f"<span class=p>{r.params:,}</span> {e(','.join(r.dtypes))}{q}{shape}"
        )

    # rows are depth-first: open a <details> per module, close when depth goes back up
    stack: list[int] = []
    for r in rows:
        while stack and stack[-1] >= r.depth:
            parts.append("</details>")
            stack.pop()
        is_open = " open" if r.depth < 2 else ""
        parts.append(f"<details{is_open}><summary>{node_label(r)}</summary>")
        stack.append(r.depth)
    parts += ["</details>"] * len(stack)
    if ep is not None:
        nodes = graph_nodes(ep)
        hist = op_histogram(ep)
        parts.append(f"<h2>Exported graph: {e(signature)} ({len(nodes)} nodes)</h2><table>")
        parts.append("<tr><th>op</th><th>count</th></tr>")
        for op, c in hist.most_common():
            cls = " class=composite" if op.startswith("famous.") else ""
            parts.append(f"<tr{cls}><td><code>{e(op)}</code></td><td>{c}</td></tr>")
        parts.append("</table><h2>Nodes</h2>")
        parts.append("<input placeholder='filter nodes…' oninput='filt(this.value)'>")
        parts.append(
            "<table id=nodes><thead><tr><th>#</th><th>name</th><th>kind</th><th>target</th>"
            "<th>shape</th><th>dtype</th><th>inputs</th></tr></thead><tbody>"
        )
        for i, n in enumerate(nodes):
            cls = " class=composite" if n.target.startswith("famous.") else ""
            parts.append(
                f"<tr{cls}><td>{i}</td><td id='{e(n.name)}'>{e(n.name)}</td><td>{e(n.op)}</td>"
                f"<td><code>{e(n.target)}</code></td><td>{e(n.shape)}</td><td>{e(n.dtype)}</td>"
                f"<td>{e(', '.join(n.args))}</td></tr>"
            )
        parts.append("</tbody></table>")
        data = {"signature": signature, "ops": dict(hist)}
        parts.append(f"<script type='application/json' id=summary>{e(json.dumps(data))}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def tree_as_dicts(rows: list[ModuleRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
