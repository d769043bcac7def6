/* The closed-kline fast path of feed_service.binance.KlineParser, compiled.
 *
 * Why C: the Python path spends ~5 us per closed frame, and compiling its glue (Cython,
 * mypyc) gains nothing, because the cost is in the objects it makes on the way (msgspec's
 * structs and strings, then the dict and the model). Here the frame's text is read once
 * and only the objects the result holds are made: five Decimals, the symbol, the count,
 * the field dict, the model instance and the Frame tuple.
 *
 * The rule that keeps it exact: this decoder either decides a frame exactly as
 * `KlineParser.parse` in Python would, or it answers None and the Python path decides.
 * It decides a compact open kline by the same two marks as the Python shortcut, and a
 * plain closed kline the way `json.loads` + `CandleClosed`'s validation would: valid
 * JSON, no `id` (a response), no escape in any key or in any value it reads, none of
 * those keys twice (`json` keeps the last), `x` true, times and count non-negative
 * integers (times below year 2096, where the float conversion is exact), a symbol of
 * 2-32 of [A-Z0-9], a supported interval, close after open, prices of digits with at
 * most one inner dot, the high and low bracketing open and close. Anything else -- a
 * spaced open kline, a refusal, NaN, a surrogate, another layout -- is None, never an
 * error: the Python path owns every other message. Property tests hold it to that
 * (tests/unit/feed/test_compiled_decoder.py, and every parse test of
 * test_binance_parser.py runs the parser with and without it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_INTERVALS 32
/* 4,000,000,000,000 ms: year 2096, where fromtimestamp(ms / 1000) stays exact. */
#define FLOAT_EXACT_MS 4000000000000LL

typedef struct {
    const char *p;
    const char *end;
} Cursor;

typedef struct {
    const char *s;
    Py_ssize_t n;
} Span;

enum { K_T = 0, K_TT, K_S, K_I, K_O, K_C, K_H, K_L, K_V, K_N, K_X, K_COUNT };

typedef struct {
    long long t, end, trades;
    Span s, i, o, c, h, l, v;
    unsigned seen; /* bit per K_* */
} Kline;

typedef struct {
    int found; /* an object with e == "kline" and a complete k */
    Kline k;
} Message;

typedef struct {
    PyObject_HEAD
    PyObject *candle_type;
    PyObject *template;   /* dict: the constants, in the model's field order */
    PyObject *fields_set; /* frozenset of the model's field names */
    PyObject *frame_type;
    PyObject *kind;
    PyObject *open_frame; /* answered for a compact open kline, as the Python shortcut */
    PyObject *decimal;
    PyObject *fromtimestamp;
    PyObject *utc;
    PyObject *intervals[MAX_INTERVALS];
    const char *interval_names[MAX_INTERVALS]; /* their UTF-8, cached by each str */
    Py_ssize_t interval_sizes[MAX_INTERVALS];
    Py_ssize_t interval_count;
    /* The last (open ms, close ms) and their datetimes: every stream of an interval
       closes at the same instant, so a burst of closes repeats the pair. */
    long long last_t, last_end;
    PyObject *open_time, *close_time;
} Decoder;

static PyObject *s_dict, *s_fields_set, *s_extra, *s_private, *s_empty;
static PyObject *s_symbol, *s_interval, *s_open_time, *s_close_time, *s_open, *s_high, *s_low,
    *s_close, *s_volume, *s_trades;

/* -- the JSON reader: 0 = a value was read or skipped, -1 = not for this path ---------- */

static inline void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static inline int is_hex(char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* A string; `span` gets its raw content and `escaped` whether it held a backslash.
   Control characters are refused as `json.loads` (strict) refuses them. */
static int read_string(Cursor *c, Span *span, int *escaped) {
    if (c->p >= c->end || *c->p != '"') {
        return -1;
    }
    const char *start = ++c->p;
    *escaped = 0;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            span->s = start;
            span->n = c->p - start;
            c->p++;
            return 0;
        }
        if (ch < 0x20) {
            return -1;
        }
        if (ch == '\\') {
            *escaped = 1;
            if (++c->p >= c->end) {
                return -1;
            }
            switch (*c->p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                c->p++;
                break;
            case 'u':
                if (c->end - c->p < 5 || !is_hex(c->p[1]) || !is_hex(c->p[2]) || !is_hex(c->p[3])
                    || !is_hex(c->p[4])) {
                    return -1;
                }
                c->p += 5;
                break;
            default:
                return -1;
            }
            continue;
        }
        c->p++;
    }
    return -1;
}

static inline int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Whether `needle` occurs in `hay`: memchr (vectorised) for the needle's byte at `pivot`,
   chosen rare in a kline frame, then one comparison per candidate. glibc's memmem costs
   ~0.4 us on a 300-byte frame for these short needles; this costs a few tens of ns. */
static int contains(const char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m, Py_ssize_t pivot) {
    if (n < m) return 0;
    const char *p = hay + pivot, *last = hay + (n - m) + pivot;
    while (p <= last) {
        p = memchr(p, needle[pivot], (size_t)(last - p) + 1);
        if (p == NULL) return 0;
        if (memcmp(p - pivot, needle, (size_t)m) == 0) return 1;
        p++;
    }
    return 0;
}

/* A JSON number (any: it is skipped). NaN and the infinities, which `json` also reads,
   are not numbers here: they take the Python path. */
static int skip_number(Cursor *c) {
    if (c->p < c->end && *c->p == '-') {
        c->p++;
    }
    if (c->p >= c->end || !is_digit(*c->p)) {
        return -1;
    }
    if (*c->p == '0') {
        c->p++;
    } else {
        while (c->p < c->end && is_digit(*c->p)) c->p++;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (c->p >= c->end || !is_digit(*c->p)) return -1;
        while (c->p < c->end && is_digit(*c->p)) c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (c->p >= c->end || !is_digit(*c->p)) return -1;
        while (c->p < c->end && is_digit(*c->p)) c->p++;
    }
    return 0;
}

/* A non-negative JSON integer of at most 15 digits (no sign, fraction or exponent, which
   `json` would read as something the contract refuses or we cannot hold exactly). */
static int read_count(Cursor *c, long long *out) {
    const char *start = c->p;
    long long value = 0;
    if (c->p >= c->end || !is_digit(*c->p)) {
        return -1;
    }
    if (*c->p == '0' && c->p + 1 < c->end && is_digit(c->p[1])) {
        return -1; /* a leading zero is not JSON */
    }
    while (c->p < c->end && is_digit(*c->p)) {
        if (c->p - start >= 15) return -1;
        value = value * 10 + (*c->p - '0');
        c->p++;
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
        return -1;
    }
    *out = value;
    return 0;
}

static int literal(Cursor *c, const char *word, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, word, (size_t)n) != 0) return -1;
    c->p += n;
    return 0;
}

static int skip_value(Cursor *c, int depth);

/* An object's members or an array's items, one by one, from the opening bracket (which
   the caller has seen). In an object, `on_member` reads the value of a key it wants
   (answering 1) or has it skipped (0), and the keys must be unescaped: "\u0078" may be
   "x". Without `on_member` (a value skipped whole) any key goes. */
typedef int (*MemberFn)(void *state, const Span *key, Cursor *c, int depth);

static int walk(Cursor *c, int depth, char close, MemberFn on_member, void *state) {
    if (depth > MAX_DEPTH) return -1;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        int taken = 0;
        if (close == '}') {
            Span key;
            int escaped;
            if (read_string(c, &key, &escaped) < 0 || (escaped && on_member != NULL)) return -1;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return -1;
            c->p++;
            skip_ws(c);
            if (on_member != NULL && (taken = on_member(state, &key, c, depth + 1)) < 0) return -1;
        }
        if (!taken && skip_value(c, depth + 1) < 0) return -1;
        skip_ws(c);
        if (c->p >= c->end) return -1;
        if (*c->p == ',') {
            c->p++;
            skip_ws(c);
            continue;
        }
        if (*c->p == close) {
            c->p++;
            return 0;
        }
        return -1;
    }
}

static int skip_value(Cursor *c, int depth) {
    Span span;
    int escaped;
    if (c->p >= c->end) return -1;
    switch (*c->p) {
    case '"': return read_string(c, &span, &escaped);
    case '{': return walk(c, depth, '}', NULL, NULL);
    case '[': return walk(c, depth, ']', NULL, NULL);
    case 't': return literal(c, "true", 4);
    case 'f': return literal(c, "false", 5);
    case 'n': return literal(c, "null", 4);
    default: return skip_number(c);
    }
}

static inline int key_is(const Span *key, const char *name, Py_ssize_t n) {
    return key->n == n && memcmp(key->s, name, (size_t)n) == 0;
}

static int read_object(Cursor *c, int depth, MemberFn on_member, void *state) {
    if (c->p >= c->end || *c->p != '{') return -1;
    return walk(c, depth, '}', on_member, state);
}

static int take(unsigned *seen, int bit) {
    if (*seen & (1u << bit)) return -1; /* twice: `json` keeps the last, we step aside */
    *seen |= 1u << bit;
    return 0;
}

static int plain_string(Cursor *c, Span *span) {
    int escaped;
    if (read_string(c, span, &escaped) < 0 || escaped) return -1;
    return 0;
}

static int kline_member(void *state, const Span *key, Cursor *c, int depth) {
    Kline *k = (Kline *)state;
    (void)depth;
    if (key->n != 1) return 0;
    switch (key->s[0]) {
    case 't': if (take(&k->seen, K_T) < 0) return -1; return read_count(c, &k->t) < 0 ? -1 : 1;
    case 'T': if (take(&k->seen, K_TT) < 0) return -1; return read_count(c, &k->end) < 0 ? -1 : 1;
    case 'n': if (take(&k->seen, K_N) < 0) return -1; return read_count(c, &k->trades) < 0 ? -1 : 1;
    case 's': if (take(&k->seen, K_S) < 0) return -1; return plain_string(c, &k->s) < 0 ? -1 : 1;
    case 'i': if (take(&k->seen, K_I) < 0) return -1; return plain_string(c, &k->i) < 0 ? -1 : 1;
    case 'o': if (take(&k->seen, K_O) < 0) return -1; return plain_string(c, &k->o) < 0 ? -1 : 1;
    case 'c': if (take(&k->seen, K_C) < 0) return -1; return plain_string(c, &k->c) < 0 ? -1 : 1;
    case 'h': if (take(&k->seen, K_H) < 0) return -1; return plain_string(c, &k->h) < 0 ? -1 : 1;
    case 'l': if (take(&k->seen, K_L) < 0) return -1; return plain_string(c, &k->l) < 0 ? -1 : 1;
    case 'v': if (take(&k->seen, K_V) < 0) return -1; return plain_string(c, &k->v) < 0 ? -1 : 1;
    case 'x':
        if (take(&k->seen, K_X) < 0) return -1;
        return literal(c, "true", 4) < 0 ? -1 : 1; /* an open kline is the Python path's */
    default: return 0;
    }
}

typedef struct {
    Message *m;
    unsigned seen; /* 1: e, 2: k */
} MessageState;

static int message_member(void *state, const Span *key, Cursor *c, int depth) {
    MessageState *ms = (MessageState *)state;
    if (key_is(key, "e", 1)) {
        Span event;
        if (take(&ms->seen, 0) < 0 || plain_string(c, &event) < 0) return -1;
        return (event.n == 5 && memcmp(event.s, "kline", 5) == 0) ? 1 : -1;
    }
    if (key_is(key, "k", 1)) {
        if (take(&ms->seen, 1) < 0) return -1;
        memset(&ms->m->k, 0, sizeof(Kline));
        if (read_object(c, depth, kline_member, &ms->m->k) < 0) return -1;
        return ms->m->k.seen == (1u << K_COUNT) - 1 ? 1 : -1;
    }
    return 0;
}

static int read_message(Cursor *c, int depth, Message *m) {
    MessageState ms = {m, 0};
    m->found = 0;
    if (read_object(c, depth, message_member, &ms) < 0) return -1;
    m->found = ms.seen == 3;
    return 0;
}

typedef struct {
    Message top, data;
    unsigned seen; /* 1: stream, 2: data, 4: e, 8: k */
} FrameState;

/* The top level: a raw frame is a kline message itself; a combined one (it has `stream`)
   carries it in `data`, and its own `e` and `k` mean nothing. Which one it is shows only
   at the end, so both are read, strictly; a response (`id`) is the Python path's. */
static int frame_member(void *state, const Span *key, Cursor *c, int depth) {
    FrameState *fs = (FrameState *)state;
    if (key_is(key, "id", 2)) return -1;
    if (key_is(key, "stream", 6)) return take(&fs->seen, 0) < 0 ? -1 : 0;
    if (key_is(key, "data", 4)) {
        if (take(&fs->seen, 1) < 0) return -1;
        return read_message(c, depth, &fs->data) < 0 ? -1 : 1;
    }
    MessageState ms = {&fs->top, 0};
    if (key_is(key, "e", 1) || key_is(key, "k", 1)) {
        if (take(&fs->seen, key->s[0] == 'e' ? 2 : 3) < 0) return -1;
        int taken = message_member(&ms, key, c, depth);
        if (taken == 1 && key->s[0] == 'k') fs->top.found |= 2;
        if (taken == 1 && key->s[0] == 'e') fs->top.found |= 1;
        return taken;
    }
    return 0;
}

/* -- the contract's checks on the spans ------------------------------------------------ */

/* A price of digits with at most one dot, digits on both of its sides, split for the
   comparison: the integer digits without their leading zeros, and the fraction. */
typedef struct {
    const char *whole, *fraction;
    Py_ssize_t whole_n, fraction_n;
} Price;

static int plain_price(const Span *v, Price *out) {
    Py_ssize_t dot = -1;
    if (v->n == 0 || v->n > 64) return 0;
    for (Py_ssize_t i = 0; i < v->n; i++) {
        char ch = v->s[i];
        if (ch == '.') {
            if (dot >= 0) return 0;
            dot = i;
        } else if (!is_digit(ch)) {
            return 0;
        }
    }
    if (dot == 0 || dot == v->n - 1) return 0;
    Py_ssize_t whole_n = dot < 0 ? v->n : dot, skip = 0;
    while (skip < whole_n - 1 && v->s[skip] == '0') skip++;
    out->whole = v->s + skip;
    out->whole_n = whole_n - skip;
    out->fraction = dot < 0 ? v->s + v->n : v->s + dot + 1;
    out->fraction_n = dot < 0 ? 0 : v->n - dot - 1;
    return 1;
}

/* Two plain prices by value, exactly: -1, 0 or 1 ("1.50" equals "01.5"). */
static int compare_prices(const Price *a, const Price *b) {
    if (a->whole_n != b->whole_n) return a->whole_n < b->whole_n ? -1 : 1;
    int r = memcmp(a->whole, b->whole, (size_t)a->whole_n);
    if (r) return r < 0 ? -1 : 1;
    Py_ssize_t n = a->fraction_n > b->fraction_n ? a->fraction_n : b->fraction_n;
    for (Py_ssize_t i = 0; i < n; i++) {
        char ca = i < a->fraction_n ? a->fraction[i] : '0', cb = i < b->fraction_n ? b->fraction[i] : '0';
        if (ca != cb) return ca < cb ? -1 : 1;
    }
    return 0;
}

static int plain_symbol(const Span *s) {
    if (s->n < 2 || s->n > 32) return 0;
    for (Py_ssize_t i = 0; i < s->n; i++) {
        char ch = s->s[i];
        if (!((ch >= 'A' && ch <= 'Z') || is_digit(ch))) return 0;
    }
    return 1;
}

/* -- the result ------------------------------------------------------------------------ */

/* A str of ASCII bytes already checked (digits and a dot, or [A-Z0-9]): no decoding. */
static PyObject *ascii_str(const Span *v) {
    PyObject *text = PyUnicode_New(v->n, 127);
    if (text != NULL) memcpy(PyUnicode_DATA(text), v->s, (size_t)v->n);
    return text;
}

static PyObject *decimal_of(Decoder *self, const Span *v) {
    PyObject *text = ascii_str(v);
    if (text == NULL) return NULL;
    PyObject *value = PyObject_CallOneArg(self->decimal, text);
    Py_DECREF(text);
    return value;
}

static PyObject *time_of(Decoder *self, long long ms) {
    PyObject *seconds = PyFloat_FromDouble((double)ms / 1000.0);
    if (seconds == NULL) return NULL;
    PyObject *args[2] = {seconds, self->utc};
    PyObject *moment = PyObject_Vectorcall(self->fromtimestamp, args, 2, NULL);
    Py_DECREF(seconds);
    return moment;
}

static int set_field(PyObject *fields, PyObject *name, PyObject *value) {
    if (value == NULL) return -1;
    int r = PyDict_SetItem(fields, name, value);
    Py_DECREF(value);
    return r;
}

static PyObject *build(Decoder *self, const Kline *k, PyObject *interval) {
    if (k->t != self->last_t || k->end != self->last_end || self->open_time == NULL) {
        PyObject *open_time = time_of(self, k->t);
        if (open_time == NULL) return NULL;
        PyObject *close_time = time_of(self, k->end);
        if (close_time == NULL) {
            Py_DECREF(open_time);
            return NULL;
        }
        Py_XSETREF(self->open_time, open_time);
        Py_XSETREF(self->close_time, close_time);
        self->last_t = k->t;
        self->last_end = k->end;
    }
    PyObject *fields = PyDict_Copy(self->template);
    if (fields == NULL) return NULL;
    if (set_field(fields, s_symbol, ascii_str(&k->s)) < 0
        || PyDict_SetItem(fields, s_interval, interval) < 0
        || PyDict_SetItem(fields, s_open_time, self->open_time) < 0
        || PyDict_SetItem(fields, s_close_time, self->close_time) < 0
        || set_field(fields, s_open, decimal_of(self, &k->o)) < 0
        || set_field(fields, s_high, decimal_of(self, &k->h)) < 0
        || set_field(fields, s_low, decimal_of(self, &k->l)) < 0
        || set_field(fields, s_close, decimal_of(self, &k->c)) < 0
        || set_field(fields, s_volume, decimal_of(self, &k->v)) < 0
        || set_field(fields, s_trades, PyLong_FromLongLong(k->trades)) < 0) {
        Py_DECREF(fields);
        return NULL;
    }
    /* What object.__new__ + pydantic's constructor leave on an instance, as the Python
       path sets it: the dict, the fields set, no extra, no private attributes. */
    PyObject *candle = PyBaseObject_Type.tp_new((PyTypeObject *)self->candle_type, s_empty, NULL);
    if (candle == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    int failed = PyObject_GenericSetAttr(candle, s_dict, fields) < 0
                 || PyObject_GenericSetAttr(candle, s_fields_set, self->fields_set) < 0
                 || PyObject_GenericSetAttr(candle, s_extra, Py_None) < 0
                 || PyObject_GenericSetAttr(candle, s_private, Py_None) < 0;
    Py_DECREF(fields);
    if (failed) {
        Py_DECREF(candle);
        return NULL;
    }
    PyTypeObject *frame_type = (PyTypeObject *)self->frame_type;
    PyObject *frame = frame_type->tp_alloc(frame_type, 4);
    if (frame == NULL) {
        Py_DECREF(candle);
        return NULL;
    }
    PyTuple_SET_ITEM(frame, 0, Py_NewRef(self->kind));
    PyTuple_SET_ITEM(frame, 1, candle);
    PyTuple_SET_ITEM(frame, 2, Py_NewRef(Py_None));
    PyTuple_SET_ITEM(frame, 3, Py_NewRef(Py_None));
    return frame;
}

static PyObject *Decoder_decode(Decoder *self, PyObject *text) {
    if (self->candle_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ClosedKlineDecoder was not initialised");
        return NULL;
    }
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "decode() takes a str");
        return NULL;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL) { /* a lone surrogate: the Python path decides */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    /* The Python path's shortcut, byte for byte (ASCII marks match the same in UTF-8):
       Binance serialises compactly, so an open kline carries both. */
    if (contains(utf8, size, "\"x\":false", 9, 1) && contains(utf8, size, "\"e\":\"kline\"", 11, 5)) {
        return Py_NewRef(self->open_frame);
    }
    Cursor c = {utf8, utf8 + size};
    FrameState fs;
    memset(&fs, 0, sizeof fs);
    skip_ws(&c);
    if (read_object(&c, 0, frame_member, &fs) < 0) Py_RETURN_NONE;
    skip_ws(&c);
    if (c.p != c.end) Py_RETURN_NONE;
    const Kline *k;
    if (fs.seen & 1) { /* combined */
        if (!fs.data.found) Py_RETURN_NONE; /* found: `data` was there, a kline */
        k = &fs.data.k;
    } else {
        if (fs.top.found != 3) Py_RETURN_NONE;
        k = &fs.top.k;
    }
    if (!plain_symbol(&k->s) || k->t >= FLOAT_EXACT_MS || k->end >= FLOAT_EXACT_MS || k->end <= k->t) {
        Py_RETURN_NONE;
    }
    PyObject *interval = NULL;
    for (Py_ssize_t i = 0; i < self->interval_count; i++) {
        if (self->interval_sizes[i] == k->i.n && memcmp(self->interval_names[i], k->i.s, (size_t)k->i.n) == 0) {
            interval = self->intervals[i];
            break;
        }
    }
    if (interval == NULL) Py_RETURN_NONE;
    Price open, high, low, close, volume;
    if (!plain_price(&k->o, &open) || !plain_price(&k->h, &high) || !plain_price(&k->l, &low)
        || !plain_price(&k->c, &close) || !plain_price(&k->v, &volume)) {
        Py_RETURN_NONE;
    }
    if (compare_prices(&low, &open) > 0 || compare_prices(&low, &close) > 0
        || compare_prices(&high, &open) < 0 || compare_prices(&high, &close) < 0) {
        Py_RETURN_NONE;
    }
    return build(self, k, interval);
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"candle_type", "template", "fields_set", "frame_type", "kind",
                            "open_frame", "intervals", "decimal", "fromtimestamp", "utc", NULL};
    PyObject *candle_type, *template, *fields_set, *frame_type, *kind, *open_frame, *intervals,
        *decimal, *fromtimestamp, *utc;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$O!O!O!O!OOO!OOO", names, &PyType_Type,
                                     &candle_type, &PyDict_Type, &template, &PyFrozenSet_Type,
                                     &fields_set, &PyType_Type, &frame_type, &kind, &open_frame,
                                     &PyTuple_Type, &intervals, &decimal, &fromtimestamp, &utc)) {
        return -1;
    }
    if (!PyType_IsSubtype((PyTypeObject *)frame_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "frame_type must be a tuple type");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(intervals);
    if (count > MAX_INTERVALS) {
        PyErr_SetString(PyExc_ValueError, "too many intervals");
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(intervals, i))) {
            PyErr_SetString(PyExc_TypeError, "intervals must be strings");
            return -1;
        }
        if (PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(intervals, i), NULL) == NULL) return -1;
    }
    Py_XSETREF(self->candle_type, Py_NewRef(candle_type));
    Py_XSETREF(self->template, Py_NewRef(template));
    Py_XSETREF(self->fields_set, Py_NewRef(fields_set));
    Py_XSETREF(self->frame_type, Py_NewRef(frame_type));
    Py_XSETREF(self->kind, Py_NewRef(kind));
    Py_XSETREF(self->open_frame, Py_NewRef(open_frame));
    Py_XSETREF(self->decimal, Py_NewRef(decimal));
    Py_XSETREF(self->fromtimestamp, Py_NewRef(fromtimestamp));
    Py_XSETREF(self->utc, Py_NewRef(utc));
    for (Py_ssize_t i = 0; i < self->interval_count; i++) Py_CLEAR(self->intervals[i]);
    for (Py_ssize_t i = 0; i < count; i++) {
        self->intervals[i] = Py_NewRef(PyTuple_GET_ITEM(intervals, i));
        self->interval_names[i] = PyUnicode_AsUTF8AndSize(self->intervals[i], &self->interval_sizes[i]);
    }
    self->interval_count = count;
    self->last_t = self->last_end = -1;
    Py_CLEAR(self->open_time);
    Py_CLEAR(self->close_time);
    return 0;
}

static int Decoder_traverse(Decoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->candle_type);
    Py_VISIT(self->template);
    Py_VISIT(self->fields_set);
    Py_VISIT(self->frame_type);
    Py_VISIT(self->kind);
    Py_VISIT(self->open_frame);
    Py_VISIT(self->decimal);
    Py_VISIT(self->fromtimestamp);
    Py_VISIT(self->utc);
    Py_VISIT(self->open_time);
    Py_VISIT(self->close_time);
    return 0;
}

static int Decoder_clear(Decoder *self) {
    Py_CLEAR(self->candle_type);
    Py_CLEAR(self->template);
    Py_CLEAR(self->fields_set);
    Py_CLEAR(self->frame_type);
    Py_CLEAR(self->kind);
    Py_CLEAR(self->open_frame);
    Py_CLEAR(self->decimal);
    Py_CLEAR(self->fromtimestamp);
    Py_CLEAR(self->utc);
    Py_CLEAR(self->open_time);
    Py_CLEAR(self->close_time);
    for (Py_ssize_t i = 0; i < self->interval_count; i++) Py_CLEAR(self->intervals[i]);
    self->interval_count = 0;
    return 0;
}

static void Decoder_dealloc(Decoder *self) {
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_O,
     PyDoc_STR("decode(text) -> the Frame of a plain closed kline, or None: the Python path decides")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "feed_service._kline.ClosedKlineDecoder",
    .tp_doc = PyDoc_STR("ClosedKlineDecoder(candle_type=, template=, fields_set=, frame_type=, kind=, "
                        "intervals=, decimal=, fromtimestamp=, utc=): see decode()"),
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_methods = Decoder_methods,
    .tp_traverse = (traverseproc)Decoder_traverse,
    .tp_clear = (inquiry)Decoder_clear,
    .tp_dealloc = (destructor)Decoder_dealloc,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "feed_service._kline",
    .m_doc = "The compiled closed-kline path of feed_service.binance (optional: the Python path is the reference).",
    .m_size = -1,
};

static PyObject *intern(const char *name) { return PyUnicode_InternFromString(name); }

PyMODINIT_FUNC PyInit__kline(void) {
    if (PyType_Ready(&DecoderType) < 0) return NULL;
    s_dict = intern("__dict__");
    s_fields_set = intern("__pydantic_fields_set__");
    s_extra = intern("__pydantic_extra__");
    s_private = intern("__pydantic_private__");
    s_symbol = intern("symbol");
    s_interval = intern("interval");
    s_open_time = intern("open_time");
    s_close_time = intern("close_time");
    s_open = intern("open");
    s_high = intern("high");
    s_low = intern("low");
    s_close = intern("close");
    s_volume = intern("volume");
    s_trades = intern("trades");
    s_empty = PyTuple_New(0);
    if (!s_dict || !s_fields_set || !s_extra || !s_private || !s_symbol || !s_interval || !s_open_time
        || !s_close_time || !s_open || !s_high || !s_low || !s_close || !s_volume || !s_trades || !s_empty) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "ClosedKlineDecoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
