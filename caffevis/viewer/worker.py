"""The viewer's background threads live only while the UI beats (DeepVis' codependent threads)."""
import threading
import time


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

    def heartbeat(self):
        self._last_beat = time.time()

    def beats_missed(self):
        return time.time() - self._last_beat > self.heartbeat_required

    def start(self):
        self.thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self.thread.start()
        return self

    def _request_quit(self):
        self._quit = True

    def stop(self, timeout=None):
        """Ask the thread to leave; wait ``timeout`` seconds for it (None: do not wait)."""
        self._request_quit()
        if timeout is not None and self.thread is not None:
            self.thread.join(timeout)
