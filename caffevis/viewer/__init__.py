"""The live viewer (``caffevis live``): DeepVis's window of panes, keys, threads and inputs.

Modules: :mod:`.config` (settings prepared for drawing), :mod:`.keys` (key table),
:mod:`.state` (UI state machine), :mod:`.tiles` and :mod:`.render` (pure drawing),
:mod:`.sources` (inputs), :mod:`.compute` (forward/back passes), :mod:`.jpgvis`
(per-unit images), :mod:`.app` (threads, window, headless driver), :mod:`.launch`
(building a viewer from settings), :mod:`.bench` (FPS measurement) and :mod:`.web`
(the same viewer in a web browser, ``caffevis serve``).
"""
