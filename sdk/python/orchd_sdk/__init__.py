"""Write orchd plugins in Python.

An orchd plugin is a WebAssembly component implementing one world of the
``orchd:plugin@0.1.0`` contract (``wit/plugin.wit``). componentize-py
generates the bindings of that world (the ``wit_world`` package) while it
builds the component; this package is a thin layer over them with the same
concepts as the Rust SDK (``sdk/rust``):

============  ==========================  ================================
world         subclass and export          host calls it may make
============  ==========================  ================================
scheduler     ``scheduler.Scheduler``      ``log``
controller    ``controller.Controller``    ``log``, ``events``, ``objects``
admission     ``admission.Admission``      ``log``
============  ==========================  ================================

A plugin's ``app.py`` subclasses one of them and exports it with
``WitWorld = export(MyPlugin)`` (componentize-py looks for ``WitWorld``).

Only the modules of the plugin's own world may be imported inside a
component (the others' bindings are not generated for it). ``meta`` and
``pods`` are pure helpers that also run natively, for unit tests.
"""
