TITLE EventReplay: artificial cell that replays a fixed list of event times

COMMENT
Python usage:

    cell = h.EventReplay()
    cell.play(h.Vector(times))    # times in ms, sorted, non-decreasing
    nc = h.NetCon(cell, target)   # or h.NetCon(cell, None) to record

play() copies the times into the cell's own buffer, so the Vector may be
discarded or changed afterwards without effect (call play() again to
replace the times; play() with no argument removes them). Unsorted times
raise a hoc error. At initialisation the cell emits, in order, one event at
each time >= t (times before the start of the run are ignored), at exactly
the stored time (bit for bit, see delay_to): NetCon.record sees the given
times and targets receive the events at time + delay.

CoreNEURON: the buffer lives behind a BBCOREPOINTER and is serialised by
bbcore_write (NEURON side) and rebuilt by bbcore_read (CoreNEURON side):
one int (the number of times) and that many doubles per cell.
After the run CoreNEURON returns the data to NEURON through the NEURON
side's bbcore_read, which replaces the instance's buffer (freeing the old).
CoreNEURON never runs a DESTRUCTOR's body (the translator compiles it out),
so the buffers bbcore_read allocates are chained per NrnThread and the chain
is freed when that thread's next model is read: a process that runs many
CoreNEURON simulations keeps at most one model's buffers per thread.
ENDCOMMENT

NEURON {
    THREADSAFE
    ARTIFICIAL_CELL EventReplay
    BBCOREPOINTER buf
    RANGE pending
}

ASSIGNED {
    pending (ms)   : time of the event currently scheduled
    cursor         : index of the next stored time to schedule, -1 when done
    buf
}

VERBATIM
#include <math.h>
#include <stdlib.h>

/* The replay buffer: a private copy of the event times. Field names must not
   collide with NMODL names, which the CoreNEURON translator rewrites even
   inside VERBATIM blocks. */
typedef struct ReplayBuffer {
    int len;                        /* number of stored times */
    double* data;                   /* the times, ms */
    struct ReplayBuffer* chain_next; /* CoreNEURON side: next buffer read on this thread */
} ReplayBuffer;

/* Buffers allocated and not yet freed by this library (one count on the
   NEURON side, one on the CoreNEURON side), for the tests' leak checks.
   Updated atomically because threads may be read in parallel. */
static long replay_live = 0;

static ReplayBuffer* replay_new(int n) {
    ReplayBuffer* rb = (ReplayBuffer*) malloc(sizeof(ReplayBuffer));
    rb->len = n;
    rb->data = n > 0 ? (double*) malloc(sizeof(double) * n) : NULL;
    rb->chain_next = NULL;
    __atomic_add_fetch(&replay_live, 1, __ATOMIC_RELAXED);
    return rb;
}

static void replay_free(ReplayBuffer* rb) {
    if (rb) {
        free(rb->data);
        free(rb);
        __atomic_sub_fetch(&replay_live, 1, __ATOMIC_RELAXED);
    }
}

/* The count, read through ctypes; the two libraries export different names. */
#if NRNBBCORE
extern "C" __attribute__((visibility("default"))) long hnnfit_event_replay_live_buffers(void) {
    return replay_live;
}
#else
extern "C" __attribute__((visibility("default"))) long hnnfit_event_replay_neuron_buffers(void) {
    return replay_live;
}
#endif
ENDVERBATIM

INITIAL {
    cursor = 0
    pending = -1e9
    advance()
    if (cursor >= 0) {
        net_send(delay_to(pending), 1)
    }
}

NET_RECEIVE (w) {
    if (flag == 1) {
        net_event(t)
        advance()
        if (cursor >= 0) {
            net_send(delay_to(pending), 1)
        }
    }
}

FUNCTION delay_to(target (ms)) (ms) {
    : net_send schedules at t + delay. The plain difference target - t can
    : make that sum miss target by one ulp, so nudge the delay to the
    : neighbouring doubles until the sum lands exactly on target: events then
    : fire, and are emitted, at exactly the stored times.
    delay_to = target - t
VERBATIM
    {
        int k;
        for (k = 0; k < 8 && t + _ldelay_to != _ltarget; ++k) {
            _ldelay_to = nextafter(_ldelay_to, (t + _ldelay_to < _ltarget) ? HUGE_VAL : -HUGE_VAL);
        }
        if (_ldelay_to < 0.) {
            _ldelay_to = 0.;
        }
    }
ENDVERBATIM
}

PROCEDURE advance() {
    : move pending to the next stored time not earlier than t; cursor = -1
    : when the buffer is exhausted
VERBATIM
    {
        ReplayBuffer* rb = (ReplayBuffer*) _p_buf;
        int i = (int) cursor;
        cursor = -1.;
        if (rb && i >= 0) {
            while (i < rb->len && rb->data[i] < t) {
                ++i;
            }
            if (i < rb->len) {
                pending = rb->data[i];
                cursor = (double) (i + 1);
            }
        }
    }
ENDVERBATIM
}

PROCEDURE play() {
VERBATIM
#if !NRNBBCORE
    {
        ReplayBuffer* rb = NULL;
        if (ifarg(1)) {
            IvocVect* vec = vector_arg(1);
            int n = vector_capacity(vec);
            double* x = vector_vec(vec);
            int i;
            for (i = 1; i < n; ++i) {
                if (!(x[i] >= x[i - 1])) {
                    hoc_execerror("EventReplay.play: event times must be sorted in non-decreasing order", 0);
                }
            }
            rb = replay_new(n);
            for (i = 0; i < n; ++i) {
                rb->data[i] = x[i];
            }
        }
        replay_free((ReplayBuffer*) _p_buf);
        _p_buf = (void*) rb;
    }
#endif
ENDVERBATIM
}

FUNCTION n_events() {
    : number of stored event times
    n_events = 0
VERBATIM
    {
        ReplayBuffer* rb = (ReplayBuffer*) _p_buf;
        _ln_events = rb ? (double) rb->len : 0.;
    }
ENDVERBATIM
}

DESTRUCTOR {
VERBATIM
#if !NRNBBCORE
    replay_free((ReplayBuffer*) _p_buf);
    _p_buf = NULL;
#endif
ENDVERBATIM
}

VERBATIM
/* NEURON -> CoreNEURON transfer. Called once with iarray == NULL to size the
   arrays, then again to fill them: one int (count) and count doubles. */
static void bbcore_write(double* xarray, int* iarray, int* xoffset, int* ioffset, _threadargsproto_) {
    ReplayBuffer* rb = (ReplayBuffer*) _p_buf;
    int n = rb ? rb->len : 0;
    if (iarray) {
        int i;
        iarray[*ioffset] = n;
        for (i = 0; i < n; ++i) {
            xarray[*xoffset + i] = rb->data[i];
        }
    }
    *ioffset += 1;
    *xoffset += n;
}

#if NRNBBCORE
/* Buffers read on each thread, newest first. Thread ids beyond the table are
   not tracked (their buffers then live until the process ends). */
#define REPLAY_MAX_THREADS 4096
static ReplayBuffer* replay_chain[REPLAY_MAX_THREADS];
#endif

static void bbcore_read(double* xarray, int* iarray, int* xoffset, int* ioffset, _threadargsproto_) {
    int n = iarray[*ioffset];
    int i;
    ReplayBuffer* rb;
#if NRNBBCORE
    int tid = _nt->id;
    /* The first instance of a thread's list (offset 0) starts a new model; the
       previous model on this thread was torn down before it was read, so its
       buffers are unreachable now. Threads are read in parallel, but each
       touches only its own slot. */
    if (*ioffset == 0 && tid >= 0 && tid < REPLAY_MAX_THREADS) {
        ReplayBuffer* old = replay_chain[tid];
        while (old) {
            ReplayBuffer* after = old->chain_next;
            replay_free(old);
            old = after;
        }
        replay_chain[tid] = NULL;
    }
#endif
    rb = replay_new(n);
    for (i = 0; i < n; ++i) {
        rb->data[i] = xarray[*xoffset + i];
    }
#if NRNBBCORE
    if (tid >= 0 && tid < REPLAY_MAX_THREADS) {
        rb->chain_next = replay_chain[tid];
        replay_chain[tid] = rb;
    }
    /* a fresh CoreNEURON instance owns no buffer yet */
#else
    /* NEURON side: after a CoreNEURON run, NEURON hands the data back through
       this same function (core2nrn_data_return) to an instance that still
       owns the buffer it sent; replace that buffer instead of leaking it. */
    replay_free((ReplayBuffer*) _p_buf);
#endif
    _p_buf = (void*) rb;
    *ioffset += 1;
    *xoffset += n;
}
ENDVERBATIM
