"""The viewer's background threads live only while the UI beats (DeepVis' codependent threads)."""
import threading
import time

from ..errors import InputError


class HeartbeatWorker:
    """Base of the input, compute and jpg-loader workers.

    A subclass calls :meth:`_init_worker` in its ``__init__``, sets ``thread_name`` and
    implements ``_run``, which loops ``while not self._quit`` and leaves when
    :meth:`beats_missed` (the UI stopped calling :meth:`heartbeat`).
    """

    thread_name = "caffevis-worker"

    def _init_worker(self, heartbeat_required):
        self.heartbeat_required = float(heartbeat_required)
        self._quit = False
        self._last_beat = time.time()
        self.thread = None
        self.failure = None  # why the thread ended by itself (an exception or missed heartbeats)

    def heartbeat(self):
        self._last_beat = time.time()

    def beats_missed(self):
        return time.time() - self._last_beat > self.heartbeat_required

    def start(self):
        self.thread = threading.Thread(target=self._guarded_run, name=self.thread_name, daemon=True)
        self.thread.start()
        return self

    def _guarded_run(self):
        try:
            self._run()
        except Exception as err:  # kept for the UI thread, which ends the run with it (no silent hang)
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.failure = f"{type(err).__name__}: {text}"
            return
        if not self._quit:
            self.failure = (f"no heartbeat from the UI for {self.heartbeat_required:g} s "
                            f"(caffevis_heartbeat_required)")

    def check_running(self):
        """InputError when the thread ended by itself; the UI calls this while it waits on it."""
        if self.thread is not None and not self.thread.is_alive() and not self._quit and self.failure:
            raise InputError(f"viewer: the {self.thread_name} thread stopped: {self.failure}")

    def _request_quit(self):
        self._quit = True

    def stop(self, timeout=None):
        """Ask the thread to leave; wait ``timeout`` seconds for it (None: do not wait)."""
        self._request_quit()
        if timeout is not None and self.thread is not None:
            self.thread.join(timeout)
