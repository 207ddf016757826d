"""The live training window of ``python train.py --dashboard`` (seed 000's layout), for every objective.

    +--------------------------------------------------------------------------------------+
    | Epoch 0.42   Step 120 / 500   Loss 0.412   Learning rate 2.7e-04   Status: Training  |
    +------------------------------------------+-------------------------------------------+
    | training loss, one curve per masking /   | the latest sample (texts, or an image     |
    | noise level, redrawn as the logs arrive  | grid), refreshed every --sample-every N   |
    +------------------------------------------+-------------------------------------------+

Threads: Tk is not thread-safe, so only the main thread touches widgets.  Training (train.py's
run) goes to a background thread; :class:`DashboardCallback`, one of its Trainer's callbacks, puts
what happens on a queue, and the window drains that queue every 100 ms.  Closing the window sets
a stop flag: at the end of the step under way the callback asks the Trainer to save a checkpoint
and stop (``control.should_save``, ``control.should_training_stop``), so ``--resume`` continues
from there; the window closes itself once that checkpoint is written.

With no display (a server, an SSH session without X forwarding) :func:`check_display` says so in
one line and points at TensorBoard, which shows the same curves and samples in a browser.
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import threading
from collections.abc import Callable

from transformers import TrainerCallback

POLL_MS = 100  # how often the window reads the queue
NO_DISPLAY_FIX = ("train without --dashboard and watch the same curves and samples in a browser: add "
                  "--report_to tensorboard, then run `tensorboard --logdir {output_dir}/runs`")


class DashboardError(Exception):
    """The window cannot open (no display, no Tk): one line for the user."""


def check_display(output_dir: str) -> None:
    """Raise DashboardError when no window can open here, before anything is loaded or written."""
    fix = NO_DISPLAY_FIX.format(output_dir=output_dir)
    try:
        import tkinter
    except ImportError:
        raise DashboardError("--dashboard needs Tkinter, which this Python lacks (Debian/Ubuntu: apt install "
                             f"python3-tk); or {fix}") from None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise DashboardError(f"--dashboard opens a window, but there is no display here ($DISPLAY is not set): {fix}")
    try:
        tkinter.Tk().destroy()
    except tkinter.TclError as err:
        raise DashboardError(f"--dashboard cannot open a window ({err}): {fix}") from None


class DashboardCallback(TrainerCallback):
    """The training thread's side: Trainer events (and samples) -> messages on ``self.events``.

    Messages are tuples, read by :class:`DashboardWindow`:
        ("status", text)                       what the run is doing now
        ("progress", step, max_steps, epoch)   after every optimizer step
        ("log", step, logs)                    a training log (loss, learning_rate, loss_<kind>_<level>)
        ("texts", step, [text, ...])           generated texts (SamplesCallback, diffusion/samples.py)
        ("image", step, PIL.Image)             a sample grid (ImageSamplesCallback)
        ("finished", text)                     the thread is done; text says how
    """

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.stop_requested = threading.Event()  # set by the window's close button
        self.stopped_at: int | None = None  # the step the close request stopped training at
        self.y_label: str | None = None  # the loss's name, when the level kind's default is wrong (images)
        self._evaluating = False
        self._training = False

    def status(self, text: str) -> None:
        self.events.put(("status", text))

    # ---- the Trainer's events ---------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True
        self.events.put(("progress", state.global_step, state.max_steps, state.epoch or 0.0))
        self.status("Training")

    def on_step_end(self, args, state, control, **kwargs):
        self.events.put(("progress", state.global_step, state.max_steps, state.epoch or 0.0))
        if self.stop_requested.is_set() and self.stopped_at is None:
            # The Trainer saves checkpoint-<step> right after this callback, then leaves its loop.
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            self.status(f"Stopping: saving checkpoint-{state.global_step}…")
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:  # training logs only; evaluations are summarised by the status
            self.events.put(("log", state.global_step, dict(logs)))

    def on_prediction_step(self, args, state, control, **kwargs):
        if not self._evaluating:  # the first batch of an evaluation
            self._evaluating = True
            self.status("Evaluating" if self._training else "Evaluating before training")

    def on_evaluate(self, args, state, control, **kwargs):
        self._evaluating = False
        if self._training and self.stopped_at is None:
            self.status("Training")

    def on_save(self, args, state, control, **kwargs):
        if self.stopped_at is None:
            self.status(f"Training (saved checkpoint-{state.global_step})")

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        if self.stopped_at is None:
            self.status("Training done: evaluating and saving the final model")

    # ---- SamplesCallback's listener interface (diffusion/samples.py) -------------------
    def samples_started(self, step: int) -> None:
        self.status("Generating sample…")

    def samples_ready(self, step: int, sample) -> None:
        kind = "texts" if isinstance(sample, list) else "image"
        self.events.put((kind, step, sample))
        if self._training and self.stopped_at is None:
            self.status("Training")


class DashboardWindow:
    """The main thread's side: a Tk window that shows what a :class:`DashboardCallback` reports.

    ``stats`` holds the top row's StringVars ("epoch", "step", "loss", "learning_rate", "status"),
    ``series`` the plotted curves ({"mask 0.5": (steps, losses)}), ``texts`` the sample shown.
    """

    def __init__(self, callback: DashboardCallback, title: str):
        import tkinter as tk
        from tkinter import ttk

        from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
        from matplotlib.figure import Figure

        self.callback = callback
        self.thread: threading.Thread | None = None
        self.logs: list[dict] = []
        self.series: dict[str, tuple[list[int], list[float]]] = {}
        self.texts, self.text_step, self.earlier_texts = "", None, ""  # the texts shown, newest first
        self.image_step: int | None = None
        self._photo = None  # the PhotoImage shown; Tk drops an image nobody references
        self._plot_dirty = False

        root = self.root = tk.Tk()
        root.title(title)
        root.geometry("1280x660")
        root.protocol("WM_DELETE_WINDOW", self.close)

        # ---- live statistics (top) ----
        top = ttk.Frame(root, padding=(10, 8))
        top.pack(side=tk.TOP, fill=tk.X)
        self.stats = {key: tk.StringVar(root, value=value) for key, value in (
            ("epoch", "-"), ("step", "-"), ("loss", "-"), ("learning_rate", "-"), ("status", "Loading the data and the model"))}
        self.stat_labels = {}
        for column, (key, name) in enumerate((("epoch", "Epoch"), ("step", "Step"), ("loss", "Loss"),
                                               ("learning_rate", "Learning rate"), ("status", "Status"))):
            ttk.Label(top, text=f"{name}:", font=("TkDefaultFont", 11, "bold")).grid(row=0, column=2 * column, sticky="w")
            label = ttk.Label(top, textvariable=self.stats[key], font=("TkDefaultFont", 11), width=12 if key != "status" else 44)
            label.grid(row=0, column=2 * column + 1, sticky="w", padx=(4, 18))
            self.stat_labels[key] = label
        self.progress = ttk.Progressbar(top, mode="determinate", length=300)
        self.progress.grid(row=1, column=0, columnspan=10, sticky="we", pady=(6, 0))

        # ---- loss plot (left) and latest sample (right) ----
        panes = ttk.PanedWindow(root, orient=tk.HORIZONTAL)
        panes.pack(side=tk.TOP, fill=tk.BOTH, expand=True, padx=8, pady=8)
        left = ttk.LabelFrame(panes, text="Loss", padding=4)
        right = ttk.LabelFrame(panes, text="Latest sample", padding=4)
        panes.add(left, weight=1)
        panes.add(right, weight=1)

        self.figure = Figure(figsize=(6.4, 4.6), dpi=100)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self._style_axes()
        self.canvas = FigureCanvasTkAgg(self.figure, master=left)
        self.canvas.get_tk_widget().pack(fill=tk.BOTH, expand=True)
        self.canvas.draw()

        self.sample_caption = tk.StringVar(root, value="no sample yet")
        ttk.Label(right, textvariable=self.sample_caption, font=("TkDefaultFont", 10, "italic")).pack(anchor="w")
        self.image_label = ttk.Label(right)
        self.image_label.pack(anchor="n", pady=4)
        # Model output is shown as plain text in a read-only Text widget (no markup is interpreted).
        self.text_box = tk.Text(right, wrap="word", height=20, font=("TkFixedFont", 10), relief="flat")
        self.text_box.pack(fill=tk.BOTH, expand=True)
        self.text_box.configure(state="disabled")
        self.text_box.tag_configure("old", foreground="#888888")

    # ---- the training thread ------------------------------------------------------------
    def start(self, train: Callable[[], int]) -> None:
        """Run ``train()`` in a background thread; its return value or exception ends up in ``self.result``."""
        self.result: int | BaseException | None = None

        def target():
            try:
                self.result = train()
            except BaseException as err:  # handed to the main thread, which reports it after the window
                self.result = err
            finally:
                self.callback.events.put(("finished", None))
        self.thread = threading.Thread(target=target, name="training", daemon=True)
        self.thread.start()
        self.root.after(POLL_MS, self._tick)

    def close(self) -> None:
        """The window's close button: stop training at the next step (with a checkpoint), then close."""
        if self.thread is not None and self.thread.is_alive():
            if not self.callback.stop_requested.is_set():
                self.callback.stop_requested.set()
                self.stats["status"].set("Stopping at the end of this step: a checkpoint follows…")
            return  # the window closes itself when the thread ends (see _tick)
        self.root.destroy()

    def _tick(self) -> None:
        self.poll()
        if self.thread is not None and not self.thread.is_alive() and self.callback.stop_requested.is_set():
            self.root.destroy()  # closed during training: the checkpoint is written, nothing more to show
            return
        self.root.after(POLL_MS, self._tick)

    # ---- the queue -> the widgets -----------------------------------------------------
    def poll(self) -> None:
        """Apply every waiting message (main thread only), then redraw the plot if it changed."""
        while True:
            try:
                event = self.callback.events.get_nowait()
            except queue.Empty:
                break
            kind, *rest = event
            if kind == "status":
                self.stats["status"].set(rest[0])
            elif kind == "progress":
                step, max_steps, epoch = rest
                self.stats["step"].set(f"{step:,} / {max_steps:,}" if max_steps else f"{step:,}")
                self.stats["epoch"].set(f"{epoch:.2f}")
                self.progress.configure(maximum=max(1, max_steps), value=step)
            elif kind == "log":
                self._add_log(*rest)
            elif kind == "texts":
                self._show_texts(*rest)
            elif kind == "image":
                self._show_image(*rest)
            elif kind == "finished":
                self._finished()
        if self._plot_dirty:
            self._draw_plot()
        self.root.update_idletasks()

    def _add_log(self, step: int, logs: dict) -> None:
        self.logs.append({**logs, "step": step})
        self.stats["loss"].set(f"{logs['loss']:.4f}")
        if logs.get("learning_rate") is not None:
            self.stats["learning_rate"].set(f"{logs['learning_rate']:.2e}")
        from diffusion.viz.plotting import training_series

        self.series = training_series(self.logs)
        self._plot_dirty = True

    def _style_axes(self) -> None:
        from matplotlib.ticker import MaxNLocator

        self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        self.axes.set_xlabel("training step")
        self.axes.set_ylabel("training loss")
        self.axes.set_title("Training loss, one curve per level")
        self.axes.grid(alpha=0.3)

    def _draw_plot(self) -> None:
        import matplotlib

        from diffusion.viz.plotting import KINDS, level_colours

        self._plot_dirty = False
        self.axes.clear()
        self._style_axes()
        colours = level_colours(list(self.series), matplotlib.colormaps["viridis"])
        for name in colours:  # in level order, so the legend reads low -> high
            steps, losses = self.series[name]
            self.axes.plot(steps, losses, marker="o", markersize=3, linewidth=1.4, label=name, color=colours[name])
        kind = "noise" if any(name.startswith("t ") for name in self.series) else "mask"
        legend_space = 1.0
        if any(name != "loss" for name in self.series):
            self.axes.set_ylabel(self.callback.y_label or KINDS[kind][0])
            # Beside the axes, not on them: the legend hides no curve.
            self.axes.legend(title=KINDS[kind][1], fontsize=8, title_fontsize=8, loc="upper left",
                             bbox_to_anchor=(1.01, 1.0), frameon=False)
            legend_space = 0.85
        self.figure.tight_layout(rect=(0, 0, legend_space, 1))
        self.canvas.draw_idle()

    def _show_texts(self, step: int, texts: list[str]) -> None:
        """The newest texts on top; the earlier ones below in grey, so that the progress shows."""
        earlier = f"step {self.text_step:,}:\n{self.texts}\n\n{self.earlier_texts}" if self.texts else ""
        self.texts, self.text_step, self.earlier_texts = "\n".join(f"[{i}] {t}" for i, t in enumerate(texts, 1)), step, earlier
        self.sample_caption.set(f"generated at step {step:,}" + (" (earlier samples below, in grey)" if earlier else ""))
        self.text_box.configure(state="normal")
        self.text_box.delete("1.0", "end")
        self.text_box.insert("end", self.texts + "\n\n")
        self.text_box.insert("end", earlier, "old")
        self.text_box.configure(state="disabled")

    def _show_image(self, step: int, image) -> None:
        from PIL import ImageTk

        # Fitted into about 460 x 470 pixels by nearest neighbour (no smoothing): the pixels stay pixels.
        scale = min(460 / image.width, 470 / image.height)
        shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample=0)
        self._photo = ImageTk.PhotoImage(shown)
        self.image_label.configure(image=self._photo)
        self.image_step = step
        self.sample_caption.set(f"generated at step {step:,}")
        self.text_box.pack_forget()

    def _finished(self) -> None:
        result, callback = self.result, self.callback
        if isinstance(result, BaseException):
            self.stats["status"].set(f"Failed: {str(result).splitlines()[0] if str(result) else type(result).__name__}")
        elif callback.stopped_at is not None:
            self.stats["status"].set(f"Stopped at step {callback.stopped_at:,}; --resume continues")
        else:
            self.stats["status"].set("Done: the final model is saved (see the terminal)")

    def mainloop(self) -> None:
        try:
            self.root.mainloop()
        except KeyboardInterrupt:  # Ctrl-C in the terminal: the same clean stop as closing the window
            self.callback.stop_requested.set()
        if self.thread is not None:
            self.thread.join()


def train_with_dashboard(train: Callable[[DashboardCallback], int], output_dir: str) -> int:
    """Open the window, run ``train(callback)`` behind it, return its exit code (or raise its error)."""
    check_display(output_dir)
    title = f"Training dashboard: {output_dir}"
    callback = DashboardCallback()
    window = DashboardWindow(callback, title)
    window.start(lambda: train(callback))
    window.mainloop()
    # The window's Tk objects reference each other; collect them here, in the thread that made them
    # (Tcl aborts the process when they are freed from another one).
    del window.root, window.stats, window.stat_labels, window.sample_caption, window._photo
    gc.collect()
    if isinstance(window.result, BaseException):
        raise window.result
    return window.result if isinstance(window.result, int) else 0
