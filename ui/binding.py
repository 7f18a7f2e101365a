"""Bind the process-wide services to a callback while keeping the signature Gradio inspects.

functools.partial hides parameters typed gr.Request / gr.SelectData / gr.Progress from Gradio (so they
would never be injected) and turns generators into plain functions (so nothing would stream).
"""
from __future__ import annotations

import functools
import inspect
import typing


def bind(fn, *bound, **fixed):
    sig = inspect.signature(fn)
    params = [p for p in list(sig.parameters.values())[len(bound):] if p.name not in fixed]
    hints = typing.get_type_hints(fn)
    names = {p.name for p in params}

    if inspect.isgeneratorfunction(fn):
        def wrapper(*args, **kwargs):
            yield from fn(*bound, *args, **fixed, **kwargs)
    else:
        def wrapper(*args, **kwargs):
            return fn(*bound, *args, **fixed, **kwargs)

    functools.update_wrapper(wrapper, fn, assigned=("__module__", "__name__", "__qualname__", "__doc__"),
                             updated=())
    wrapper.__signature__ = sig.replace(
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in params])
    wrapper.__annotations__ = {k: v for k, v in hints.items() if k in names}
    return wrapper
