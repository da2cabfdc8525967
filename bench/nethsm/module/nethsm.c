/*
 * nethsm.c: an emulated network HSM for the Shakenline lab, as a PKCS#11
 * v2.40 module (package bench/nethsm builds it; bench/nethsm/doc.go is its
 * manual).
 *
 * One slot, one token, one P-256 key pair (and a decoy private key, see
 * "stale" below). C_Sign with CKM_ECDSA returns r||s like a device would,
 * but the device is emulated:
 *
 *   - latency: each C_Sign returns latency_us + U[0, jitter_us) after it
 *     was called, the calling thread asleep meanwhile (clock_nanosleep);
 *     the other calls (C_SignInit included) answer at once;
 *   - capacity: the device signs at most `capacity` signatures per second,
 *     shared by every session, one after the other (a FIFO: above capacity
 *     the answers come later and later, as from a saturated device);
 *   - a session limit (max_sessions): C_OpenSession answers
 *     CKR_SESSION_COUNT past it;
 *   - the signature's expensive part, k·G, is precomputed: a pool of
 *     (r = x(k·G) mod n, k^-1·R mod n) is filled by background threads from
 *     C_Initialize on (OpenSSL), before the measured run; a C_Sign then
 *     costs two Montgomery multiplications modulo n (tens of nanoseconds).
 *     Each nonce is used once; a C_Sign that finds the pool empty computes
 *     its nonce on the spot, and is counted (pool_misses);
 *   - faults switched at run time through a Unix socket (conf `control`):
 *     one line per command, one line per answer ("ok ..." or "err ...").
 *
 * Control commands:
 *   fault device-error | device-removed | session-handle-invalid |
 *         token-not-present     every call that reaches the device answers
 *                               that code until `clear` (device-removed and
 *                               token-not-present also close every session
 *                               and hide the token; session-handle-invalid
 *                               closes each session it answers on)
 *   hang                        C_Sign blocks until `clear`
 *   slow US                     C_Sign answers US microseconds later
 *   stale                       once: every session is closed and the
 *                               login lost, handles are then handed out
 *                               again from the lowest, and the private
 *                               key's object handle now names the decoy key
 *                               (a client that keeps old handles signs on
 *                               another session, or with the wrong key)
 *   set latency_us=N jitter_us=N capacity=N
 *   clear                       every fault off; hung calls go on
 *   stats                       "ok {json}"
 *
 * Configuration: the file named by NETHSM_CONF, `key = value` lines, read at
 * every C_Initialize: key (PEM private key, P-256), token, object, id (hex),
 * pin, serial, latency_us, jitter_us, capacity, max_sessions, pool,
 * pool_threads, control.
 *
 * Lab only: the PIN is in the configuration file, and nothing here is
 * hardened against a hostile caller.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* Last: its compatibility names (value, count, ...) are macros. */
#include <p11-kit/pkcs11.h>

#define SLOT 1UL
#define MAX_SESSIONS_CAP 4096
#define ATTR_MAX 80

/* ---- 256-bit arithmetic modulo the P-256 group order n ---------------- */

typedef struct {
	uint64_t w[4]; /* little-endian limbs */
} u256;

static const u256 N = {{0xF3B9CAC2FC632551ULL, 0xBCE6FAADA7179E84ULL, 0xFFFFFFFFFFFFFFFFULL,
			0xFFFFFFFF00000000ULL}};
static uint64_t n0inv; /* -n^-1 mod 2^64 */

static void init_n0(void)
{
	uint64_t x = 1;
	for (int i = 0; i < 7; i++)
		x *= 2 - N.w[0] * x;
	n0inv = -x;
}

static void u256_from_be(u256 *r, const unsigned char *b)
{
	for (int i = 0; i < 4; i++) {
		uint64_t v = 0;
		for (int j = 0; j < 8; j++)
			v = v << 8 | b[8 * (3 - i) + j];
		r->w[i] = v;
	}
}

static void u256_to_be(unsigned char *b, const u256 *a)
{
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			b[8 * (3 - i) + j] = (unsigned char)(a->w[i] >> (56 - 8 * j));
}

/* sub sets r = a - b and returns the borrow. */
static uint64_t u256_sub(u256 *r, const u256 *a, const u256 *b)
{
	unsigned __int128 d;
	uint64_t borrow = 0;
	for (int i = 0; i < 4; i++) {
		d = (unsigned __int128)a->w[i] - b->w[i] - borrow;
		r->w[i] = (uint64_t)d;
		borrow = (uint64_t)(d >> 64) & 1;
	}
	return borrow;
}

/* reduce makes a < 2n into a mod n. */
static void u256_reduce(u256 *a)
{
	u256 t;
	if (!u256_sub(&t, a, &N))
		*a = t;
}

/* addmod sets r = a + b mod n for a, b < n. */
static void u256_addmod(u256 *r, const u256 *a, const u256 *b)
{
	unsigned __int128 c = 0;
	u256 s, t;
	for (int i = 0; i < 4; i++) {
		c += (unsigned __int128)a->w[i] + b->w[i];
		s.w[i] = (uint64_t)c;
		c >>= 64;
	}
	uint64_t borrow = u256_sub(&t, &s, &N);
	*r = (c || !borrow) ? t : s;
}

/* montmul sets r = a·b·2^-256 mod n for a, b < n (CIOS). */
static void montmul(u256 *r, const u256 *a, const u256 *b)
{
	uint64_t t[6] = {0};
	for (int i = 0; i < 4; i++) {
		unsigned __int128 c = 0;
		for (int j = 0; j < 4; j++) {
			c += (unsigned __int128)a->w[j] * b->w[i] + t[j];
			t[j] = (uint64_t)c;
			c >>= 64;
		}
		c += t[4];
		t[4] = (uint64_t)c;
		t[5] = (uint64_t)(c >> 64);
		uint64_t m = t[0] * n0inv;
		c = (unsigned __int128)m * N.w[0] + t[0];
		c >>= 64;
		for (int j = 1; j < 4; j++) {
			c += (unsigned __int128)m * N.w[j] + t[j];
			t[j - 1] = (uint64_t)c;
			c >>= 64;
		}
		c += t[4];
		t[3] = (uint64_t)c;
		t[4] = t[5] + (uint64_t)(c >> 64);
	}
	u256 lo = {{t[0], t[1], t[2], t[3]}}, sub;
	uint64_t borrow = u256_sub(&sub, &lo, &N);
	*r = (t[4] || !borrow) ? sub : lo;
}

static int u256_zero(const u256 *a) { return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0; }

static int bn_to_u256(u256 *r, const BIGNUM *b)
{
	unsigned char buf[32];
	if (BN_bn2binpad(b, buf, 32) != 32)
		return 0;
	u256_from_be(r, buf);
	return 1;
}

/* ---- configuration and device state ---------------------------------- */

typedef struct {
	char key[512], control[108];
	char token[33], object[64], pin[64], serial[17];
	unsigned char id[32];
	size_t id_len;
	uint64_t latency_ns, jitter_ns, capacity;
	unsigned long max_sessions;
	size_t pool;
	int pool_threads;
} conf_t;

static conf_t cf;

/* A key the token holds: d·R mod n for signing, and the public point. */
typedef struct {
	u256 dR;
	unsigned char point[65];
} key_t_;

static key_t_ key_main, key_decoy;

typedef struct {
	u256 r, kinvR;
} nonce_t;

/* The pool survives C_Finalize/C_Initialize (it does not depend on the key). */
static nonce_t *pool;
static atomic_uchar *pool_ready;
static size_t pool_size;
static atomic_size_t pool_claim, pool_next, pool_filled;
static atomic_uint_fast64_t pool_misses;
static pthread_t pool_thr[16];
static int pool_nthr;
static atomic_int pool_stop;

static EC_GROUP *group;
static BIGNUM *order;

/* Device timing and faults: the device's state, kept across C_Finalize. */
static atomic_uint_fast64_t dev_next;  /* when the device is free (CLOCK_MONOTONIC ns) */
static atomic_uint_fast64_t lat_ns, jit_ns, cap_sps, slow_ns;
static atomic_ulong fault_rv;          /* 0: none */
static atomic_int hang;
static pthread_mutex_t hang_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cv = PTHREAD_COND_INITIALIZER;

static atomic_uint_fast64_t st_signs, st_errors, st_compute_ns, st_hung, st_logins, st_opens, st_closes, st_not_logged_in;
static atomic_int st_inflight, st_max_inflight;

/* Sessions and objects (under mu). */
typedef struct {
	int used;
	uint64_t epoch;   /* bumped when the session ends: a call in flight sees it */
	int op;           /* 0 none, 1 sign initialised, 2 sign in progress */
	int op_key;       /* object index of the signing key */
	int find_active;
	int find_res[3], find_n, find_pos;
} session_t;

enum { OBJ_PRIV, OBJ_PUB, OBJ_DECOY, NOBJ };

typedef struct {
	CK_ATTRIBUTE_TYPE type;
	CK_ULONG len;
	unsigned char val[ATTR_MAX];
} attr_t;

typedef struct {
	attr_t a[12];
	int n;
	int is_private;
} object_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static session_t *sess;
static unsigned long sess_cap, sess_open;
static int logged_in;
static object_t objs[NOBJ];
static CK_OBJECT_HANDLE obj_handle[NOBJ];
static CK_OBJECT_HANDLE next_obj_handle = 1;

/* Control socket. */
static pthread_t ctl_thr;
static int ctl_fd = -1, ctl_running;
static char ctl_path[108];

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static __thread uint64_t rng;

static uint64_t rnd(void)
{
	if (rng == 0)
		rng = mono_ns() ^ (uint64_t)(uintptr_t)&rng ^ 0x9e3779b97f4a7c15ULL;
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- nonces --------------------------------------------------------- */

/* make_nonce computes k at random, r = x(k·G) mod n, k^-1·R mod n. */
static int make_nonce(nonce_t *e, BN_CTX *ctx)
{
	int ok = 0;
	BN_CTX_start(ctx);
	BIGNUM *k = BN_CTX_get(ctx), *x = BN_CTX_get(ctx), *kinv = BN_CTX_get(ctx), *t = BN_CTX_get(ctx);
	EC_POINT *p = EC_POINT_new(group);
	if (t == NULL || p == NULL)
		goto out;
	for (;;) {
		if (!BN_priv_rand_range(k, order) || BN_is_zero(k))
			continue;
		if (!EC_POINT_mul(group, p, k, NULL, NULL, ctx) ||
		    !EC_POINT_get_affine_coordinates(group, p, x, NULL, ctx) || !BN_nnmod(x, x, order, ctx))
			goto out;
		if (BN_is_zero(x))
			continue;
		if (!BN_mod_inverse(kinv, k, order, ctx) || !BN_lshift(t, kinv, 256) || !BN_nnmod(t, t, order, ctx))
			goto out;
		if (!bn_to_u256(&e->r, x) || !bn_to_u256(&e->kinvR, t))
			goto out;
		ok = 1;
		break;
	}
out:
	EC_POINT_free(p);
	BN_CTX_end(ctx);
	return ok;
}

static void *pool_fill(void *arg)
{
	(void)arg;
	BN_CTX *ctx = BN_CTX_new();
	if (ctx == NULL)
		return NULL;
	while (!atomic_load(&pool_stop)) {
		size_t i = atomic_fetch_add(&pool_claim, 1);
		if (i >= pool_size)
			break;
		if (!make_nonce(&pool[i], ctx))
			break;
		atomic_store_explicit(&pool_ready[i], 1, memory_order_release);
		atomic_fetch_add(&pool_filled, 1);
	}
	BN_CTX_free(ctx);
	return NULL;
}

static void pool_start(void)
{
	if (pool != NULL || cf.pool == 0)
		return;
	pool_size = cf.pool;
	pool = calloc(pool_size, sizeof *pool);
	pool_ready = calloc(pool_size, sizeof *pool_ready);
	if (pool == NULL || pool_ready == NULL) {
		free(pool);
		free((void *)pool_ready);
		pool = NULL;
		pool_ready = NULL;
		pool_size = 0;
		return;
	}
	atomic_store(&pool_stop, 0);
	pool_nthr = 0;
	for (int i = 0; i < cf.pool_threads && i < 16; i++)
		if (pthread_create(&pool_thr[pool_nthr], NULL, pool_fill, NULL) == 0)
			pool_nthr++;
}

/* take_nonce returns the next precomputed nonce, or computes one. */
static int take_nonce(nonce_t *e)
{
	if (pool_size > 0) {
		size_t i = atomic_fetch_add(&pool_next, 1);
		if (i < pool_size && atomic_load_explicit(&pool_ready[i], memory_order_acquire)) {
			*e = pool[i];
			return 1;
		}
	}
	atomic_fetch_add(&pool_misses, 1);
	BN_CTX *ctx = BN_CTX_new();
	if (ctx == NULL)
		return 0;
	int ok = make_nonce(e, ctx);
	BN_CTX_free(ctx);
	return ok;
}

/* sign_digest writes r||s for the 32-byte z with key k. */
static int sign_digest(const key_t_ *k, const unsigned char *z32, unsigned char *sig)
{
	u256 z, rd, u, s;
	nonce_t e;
	u256_from_be(&z, z32);
	u256_reduce(&z);
	for (int tries = 0; tries < 4; tries++) {
		if (!take_nonce(&e))
			return 0;
		montmul(&rd, &e.r, &k->dR); /* r·d */
		u256_addmod(&u, &z, &rd);    /* z + r·d */
		montmul(&s, &e.kinvR, &u);   /* k^-1·(z + r·d) */
		if (!u256_zero(&s)) {
			u256_to_be(sig, &e.r);
			u256_to_be(sig + 32, &s);
			return 1;
		}
	}
	return 0;
}

/* ---- configuration --------------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	size_t i = 0;
	while (s[i] && isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

static int read_conf(void)
{
	memset(&cf, 0, sizeof cf);
	copy_str(cf.token, sizeof cf.token, "nethsm");
	copy_str(cf.object, sizeof cf.object, "shaken");
	copy_str(cf.serial, sizeof cf.serial, "0001");
	cf.id[0] = 1;
	cf.id_len = 1;
	cf.max_sessions = 64;
	cf.pool = 100000;
	cf.pool_threads = 1;
	const char *path = getenv("NETHSM_CONF");
	if (path == NULL) {
		fprintf(stderr, "nethsm: NETHSM_CONF is not set\n");
		return 0;
	}
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "nethsm: %s: %s\n", path, strerror(errno));
		return 0;
	}
	char line[1024];
	int ok = 1;
	while (fgets(line, sizeof line, f) != NULL) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *eq = strchr(line, '=');
		if (eq == NULL) {
			trim(line);
			if (line[0])
				ok = 0;
			continue;
		}
		*eq = 0;
		char *k = line, *v = eq + 1;
		trim(k);
		trim(v);
		if (!strcmp(k, "key"))
			copy_str(cf.key, sizeof cf.key, v);
		else if (!strcmp(k, "control"))
			copy_str(cf.control, sizeof cf.control, v);
		else if (!strcmp(k, "token"))
			copy_str(cf.token, sizeof cf.token, v);
		else if (!strcmp(k, "object"))
			copy_str(cf.object, sizeof cf.object, v);
		else if (!strcmp(k, "pin"))
			copy_str(cf.pin, sizeof cf.pin, v);
		else if (!strcmp(k, "serial"))
			copy_str(cf.serial, sizeof cf.serial, v);
		else if (!strcmp(k, "id")) {
			size_t n = strlen(v);
			if (n % 2 || n / 2 > sizeof cf.id || n == 0) {
				ok = 0;
				continue;
			}
			for (size_t i = 0; i < n / 2; i++) {
				int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
				if (hi < 0 || lo < 0)
					ok = 0;
				cf.id[i] = (unsigned char)(hi << 4 | lo);
			}
			cf.id_len = n / 2;
		} else if (!strcmp(k, "latency_us"))
			cf.latency_ns = strtoull(v, NULL, 10) * 1000;
		else if (!strcmp(k, "jitter_us"))
			cf.jitter_ns = strtoull(v, NULL, 10) * 1000;
		else if (!strcmp(k, "capacity"))
			cf.capacity = strtoull(v, NULL, 10);
		else if (!strcmp(k, "max_sessions"))
			cf.max_sessions = strtoul(v, NULL, 10);
		else if (!strcmp(k, "pool"))
			cf.pool = strtoull(v, NULL, 10);
		else if (!strcmp(k, "pool_threads"))
			cf.pool_threads = atoi(v);
		else {
			fprintf(stderr, "nethsm: %s: unknown key %s\n", path, k);
			ok = 0;
		}
	}
	fclose(f);
	if (cf.max_sessions == 0 || cf.max_sessions > MAX_SESSIONS_CAP)
		cf.max_sessions = MAX_SESSIONS_CAP;
	if (cf.pool_threads < 1)
		cf.pool_threads = 1;
	if (!ok)
		fprintf(stderr, "nethsm: %s: bad configuration\n", path);
	return ok;
}

/* key_from_d fills k from the private scalar d. */
static int key_from_d(key_t_ *k, const BIGNUM *d)
{
	int ok = 0;
	BN_CTX *ctx = BN_CTX_new();
	BIGNUM *t = BN_new();
	EC_POINT *p = EC_POINT_new(group);
	if (ctx == NULL || t == NULL || p == NULL)
		goto out;
	if (!BN_lshift(t, d, 256) || !BN_nnmod(t, t, order, ctx) || !bn_to_u256(&k->dR, t))
		goto out;
	if (!EC_POINT_mul(group, p, d, NULL, NULL, ctx) ||
	    EC_POINT_point2oct(group, p, POINT_CONVERSION_UNCOMPRESSED, k->point, 65, ctx) != 65)
		goto out;
	ok = 1;
out:
	EC_POINT_free(p);
	BN_free(t);
	BN_CTX_free(ctx);
	return ok;
}

static int load_keys(void)
{
	FILE *f = fopen(cf.key, "r");
	if (f == NULL) {
		fprintf(stderr, "nethsm: key %s: %s\n", cf.key, strerror(errno));
		return 0;
	}
	EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL) {
		fprintf(stderr, "nethsm: key %s: not a PEM private key\n", cf.key);
		return 0;
	}
	char curve[64] = "";
	BIGNUM *d = NULL;
	int ok = EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof curve, NULL) &&
		 !strcmp(curve, "prime256v1") && EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &d) &&
		 key_from_d(&key_main, d);
	if (!ok)
		fprintf(stderr, "nethsm: key %s: not a P-256 private key\n", cf.key);
	BN_clear_free(d);
	EVP_PKEY_free(pk);
	if (!ok)
		return 0;
	BIGNUM *dd = BN_new();
	ok = dd != NULL && BN_priv_rand_range(dd, order) && !BN_is_zero(dd) && key_from_d(&key_decoy, dd);
	BN_clear_free(dd);
	return ok;
}

/* ---- objects ---------------------------------------------------------- */

static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static void obj_add(object_t *o, CK_ATTRIBUTE_TYPE t, const void *v, CK_ULONG n)
{
	attr_t *a = &o->a[o->n++];
	a->type = t;
	a->len = n;
	memcpy(a->val, v, n);
}

static void obj_ulong(object_t *o, CK_ATTRIBUTE_TYPE t, CK_ULONG v) { obj_add(o, t, &v, sizeof v); }

static void obj_bool(object_t *o, CK_ATTRIBUTE_TYPE t, CK_BBOOL v) { obj_add(o, t, &v, 1); }

static void make_objects(void)
{
	memset(objs, 0, sizeof objs);
	for (int i = 0; i < NOBJ; i++) {
		object_t *o = &objs[i];
		int priv = i != OBJ_PUB;
		obj_ulong(o, CKA_CLASS, priv ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY);
		obj_ulong(o, CKA_KEY_TYPE, CKK_EC);
		obj_bool(o, CKA_TOKEN, CK_TRUE);
		obj_bool(o, CKA_PRIVATE, priv ? CK_TRUE : CK_FALSE);
		obj_add(o, CKA_EC_PARAMS, p256_oid, sizeof p256_oid);
		if (i == OBJ_DECOY) {
			obj_add(o, CKA_LABEL, "decoy", 5);
			obj_add(o, CKA_ID, "\xde\xc0", 2);
		} else {
			obj_add(o, CKA_LABEL, cf.object, strlen(cf.object));
			obj_add(o, CKA_ID, cf.id, cf.id_len);
		}
		if (priv) {
			obj_bool(o, CKA_SIGN, CK_TRUE);
			obj_bool(o, CKA_SENSITIVE, CK_TRUE);
			obj_bool(o, CKA_EXTRACTABLE, CK_FALSE);
		} else {
			unsigned char der[67] = {0x04, 65};
			memcpy(der + 2, key_main.point, 65);
			obj_add(o, CKA_EC_POINT, der, sizeof der);
			obj_bool(o, CKA_VERIFY, CK_TRUE);
		}
		o->is_private = priv;
	}
	if (obj_handle[OBJ_PRIV] == 0) {
		for (int i = 0; i < NOBJ; i++)
			obj_handle[i] = next_obj_handle++;
	}
}

static int obj_index(CK_OBJECT_HANDLE h)
{
	for (int i = 0; i < NOBJ; i++)
		if (obj_handle[i] == h)
			return i;
	return -1;
}

static const attr_t *obj_attr(const object_t *o, CK_ATTRIBUTE_TYPE t)
{
	for (int i = 0; i < o->n; i++)
		if (o->a[i].type == t)
			return &o->a[i];
	return NULL;
}

/* ---- sessions (mu held) ---------------------------------------------- */

static int removed(void)
{
	CK_RV rv = atomic_load(&fault_rv);
	return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

static void end_session(session_t *s)
{
	s->used = 0;
	s->epoch++;
	s->op = 0;
	s->find_active = 0;
	sess_open--;
	if (sess_open == 0)
		logged_in = 0;
}

static void end_all_sessions(void)
{
	for (unsigned long i = 0; i < sess_cap; i++)
		if (sess[i].used)
			end_session(&sess[i]);
	logged_in = 0;
}

/* lookup returns the session of h, or NULL. */
static session_t *lookup(CK_SESSION_HANDLE h)
{
	if (h == 0 || h > sess_cap || !sess[h - 1].used)
		return NULL;
	return &sess[h - 1];
}

/*
 * enter checks a call on session h that reaches the device: the module is
 * initialised, no fault answers instead, the handle is open. It returns
 * with mu held and *s set on CKR_OK, without mu otherwise.
 */
static CK_RV enter(CK_SESSION_HANDLE h, session_t **s)
{
	pthread_mutex_lock(&mu);
	if (!initialized) {
		pthread_mutex_unlock(&mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	CK_RV f = atomic_load(&fault_rv);
	if (f != CKR_OK && f != CKR_SESSION_HANDLE_INVALID) {
		pthread_mutex_unlock(&mu);
		return f;
	}
	*s = lookup(h);
	if (*s == NULL) {
		pthread_mutex_unlock(&mu);
		return CKR_SESSION_HANDLE_INVALID;
	}
	if (f == CKR_SESSION_HANDLE_INVALID) {
		end_session(*s);
		pthread_mutex_unlock(&mu);
		return f;
	}
	return CKR_OK;
}

/* ---- control socket --------------------------------------------------- */

static void set_fault(CK_RV rv)
{
	pthread_mutex_lock(&mu);
	atomic_store(&fault_rv, rv);
	if (rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT)
		end_all_sessions();
	pthread_mutex_unlock(&mu);
}

static void stale(void)
{
	pthread_mutex_lock(&mu);
	end_all_sessions();
	obj_handle[OBJ_DECOY] = obj_handle[OBJ_PRIV];
	obj_handle[OBJ_PRIV] = next_obj_handle++;
	pthread_mutex_unlock(&mu);
}

static void clear_faults(void)
{
	atomic_store(&fault_rv, CKR_OK);
	atomic_store(&slow_ns, 0);
	pthread_mutex_lock(&hang_mu);
	atomic_store(&hang, 0);
	pthread_cond_broadcast(&hang_cv);
	pthread_mutex_unlock(&hang_mu);
}

static const char *fault_name(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return "";
	case CKR_DEVICE_ERROR:
		return "device-error";
	case CKR_DEVICE_REMOVED:
		return "device-removed";
	case CKR_SESSION_HANDLE_INVALID:
		return "session-handle-invalid";
	case CKR_TOKEN_NOT_PRESENT:
		return "token-not-present";
	}
	return "other";
}

static void stats(char *out, size_t cap)
{
	pthread_mutex_lock(&mu);
	unsigned long open = sess_open;
	pthread_mutex_unlock(&mu);
	snprintf(out, cap,
		 "{\"signs\":%" PRIu64 ",\"sign_errors\":%" PRIu64 ",\"compute_ns\":%" PRIu64
		 ",\"pool_size\":%zu,\"pool_filled\":%zu,\"pool_used\":%zu,\"pool_misses\":%" PRIu64
		 ",\"sessions\":%lu,\"max_sessions\":%lu,\"in_flight\":%d,\"max_in_flight\":%d,\"hung\":%" PRIu64
		 ",\"logins\":%" PRIu64 ",\"opens\":%" PRIu64 ",\"closes\":%" PRIu64 ",\"not_logged_in\":%" PRIu64
		 ",\"fault\":\"%s\",\"hang\":%d,\"slow_us\":%" PRIu64 ",\"latency_us\":%" PRIu64
		 ",\"jitter_us\":%" PRIu64 ",\"capacity\":%" PRIu64 "}",
		 (uint64_t)atomic_load(&st_signs), (uint64_t)atomic_load(&st_errors),
		 (uint64_t)atomic_load(&st_compute_ns), pool_size, (size_t)atomic_load(&pool_filled),
		 (size_t)atomic_load(&pool_next), (uint64_t)atomic_load(&pool_misses), open, cf.max_sessions,
		 atomic_load(&st_inflight), atomic_load(&st_max_inflight), (uint64_t)atomic_load(&st_hung),
		 (uint64_t)atomic_load(&st_logins), (uint64_t)atomic_load(&st_opens), (uint64_t)atomic_load(&st_closes),
		 (uint64_t)atomic_load(&st_not_logged_in),
		 fault_name(atomic_load(&fault_rv)), atomic_load(&hang), (uint64_t)atomic_load(&slow_ns) / 1000,
		 (uint64_t)atomic_load(&lat_ns) / 1000, (uint64_t)atomic_load(&jit_ns) / 1000,
		 (uint64_t)atomic_load(&cap_sps));
}

static void command(char *line, char *out, size_t cap)
{
	char *arg = line;
	while (*arg && !isspace((unsigned char)*arg))
		arg++;
	if (*arg)
		*arg++ = 0;
	trim(arg);
	if (!strcmp(line, "fault")) {
		CK_RV rv;
		if (!strcmp(arg, "device-error"))
			rv = CKR_DEVICE_ERROR;
		else if (!strcmp(arg, "device-removed"))
			rv = CKR_DEVICE_REMOVED;
		else if (!strcmp(arg, "session-handle-invalid"))
			rv = CKR_SESSION_HANDLE_INVALID;
		else if (!strcmp(arg, "token-not-present"))
			rv = CKR_TOKEN_NOT_PRESENT;
		else {
			snprintf(out, cap, "err unknown fault %s", arg);
			return;
		}
		set_fault(rv);
	} else if (!strcmp(line, "hang")) {
		atomic_store(&hang, 1);
	} else if (!strcmp(line, "slow")) {
		atomic_store(&slow_ns, strtoull(arg, NULL, 10) * 1000);
	} else if (!strcmp(line, "stale")) {
		stale();
	} else if (!strcmp(line, "clear")) {
		clear_faults();
	} else if (!strcmp(line, "set")) {
		char *save = NULL;
		for (char *kv = strtok_r(arg, " ", &save); kv != NULL; kv = strtok_r(NULL, " ", &save)) {
			char *eq = strchr(kv, '=');
			if (eq == NULL) {
				snprintf(out, cap, "err set %s: want key=value", kv);
				return;
			}
			*eq = 0;
			uint64_t v = strtoull(eq + 1, NULL, 10);
			if (!strcmp(kv, "latency_us"))
				atomic_store(&lat_ns, v * 1000);
			else if (!strcmp(kv, "jitter_us"))
				atomic_store(&jit_ns, v * 1000);
			else if (!strcmp(kv, "capacity"))
				atomic_store(&cap_sps, v);
			else {
				snprintf(out, cap, "err set: unknown key %s", kv);
				return;
			}
		}
	} else if (!strcmp(line, "stats")) {
		char js[1024];
		stats(js, sizeof js);
		snprintf(out, cap, "ok %s", js);
		return;
	} else {
		snprintf(out, cap, "err unknown command %s", line);
		return;
	}
	snprintf(out, cap, "ok");
}

static void *ctl_loop(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(ctl_fd, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* shut down */
		}
		FILE *f = fdopen(c, "r+");
		if (f == NULL) {
			close(c);
			continue;
		}
		char line[512], out[1200];
		while (fgets(line, sizeof line, f) != NULL) {
			trim(line);
			if (!line[0])
				continue;
			command(line, out, sizeof out);
			fprintf(f, "%s\n", out);
			fflush(f);
		}
		fclose(f);
	}
}

static void ctl_start(void)
{
	if (ctl_running || !cf.control[0])
		return;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(cf.control) >= sizeof a.sun_path) {
		fprintf(stderr, "nethsm: control path too long\n");
		return;
	}
	copy_str(a.sun_path, sizeof a.sun_path, cf.control);
	unlink(cf.control);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0) {
		fprintf(stderr, "nethsm: control socket %s: %s\n", cf.control, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	chmod(cf.control, 0600);
	ctl_fd = fd;
	copy_str(ctl_path, sizeof ctl_path, cf.control);
	if (pthread_create(&ctl_thr, NULL, ctl_loop, NULL) != 0) {
		close(fd);
		ctl_fd = -1;
		return;
	}
	ctl_running = 1;
}

__attribute__((destructor)) static void unload(void)
{
	if (ctl_running) {
		shutdown(ctl_fd, SHUT_RDWR);
		close(ctl_fd);
		pthread_join(ctl_thr, NULL);
		unlink(ctl_path);
		ctl_running = 0;
	}
	atomic_store(&pool_stop, 1);
	for (int i = 0; i < pool_nthr; i++)
		pthread_join(pool_thr[i], NULL);
	pool_nthr = 0;
	clear_faults();
}

/* ---- PKCS#11: general ------------------------------------------------ */

static void pad(unsigned char *dst, size_t n, const char *s)
{
	memset(dst, ' ', n);
	size_t l = strlen(s);
	memcpy(dst, s, l < n ? l : n);
}

CK_RV C_Initialize(CK_VOID_PTR args)
{
	(void)args;
	pthread_mutex_lock(&mu);
	if (initialized) {
		pthread_mutex_unlock(&mu);
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	if (group == NULL) {
		init_n0();
		group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
		order = BN_new();
		if (group == NULL || order == NULL || !EC_GROUP_get_order(group, order, NULL)) {
			pthread_mutex_unlock(&mu);
			return CKR_GENERAL_ERROR;
		}
	}
	if (!read_conf() || !load_keys()) {
		pthread_mutex_unlock(&mu);
		return CKR_GENERAL_ERROR;
	}
	if (sess == NULL) {
		sess = calloc(MAX_SESSIONS_CAP, sizeof *sess);
		if (sess == NULL) {
			pthread_mutex_unlock(&mu);
			return CKR_HOST_MEMORY;
		}
	}
	sess_cap = cf.max_sessions;
	sess_open = 0;
	logged_in = 0;
	make_objects();
	atomic_store(&lat_ns, cf.latency_ns);
	atomic_store(&jit_ns, cf.jitter_ns);
	atomic_store(&cap_sps, cf.capacity);
	initialized = 1;
	pool_start();
	ctl_start();
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}

CK_RV C_Finalize(CK_VOID_PTR reserved_)
{
	if (reserved_ != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (!initialized) {
		pthread_mutex_unlock(&mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	end_all_sessions();
	initialized = 0;
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}

CK_RV C_GetInfo(CK_INFO_PTR info)
{
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, 0, sizeof *info);
	info->cryptokiVersion.major = 2;
	info->cryptokiVersion.minor = 40;
	pad(info->manufacturerID, sizeof info->manufacturerID, "shakenline lab");
	pad(info->libraryDescription, sizeof info->libraryDescription, "emulated network HSM");
	info->libraryVersion.major = 1;
	return CKR_OK;
}

extern CK_FUNCTION_LIST nethsm_functions;

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	*list = &nethsm_functions;
	return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
	if (n == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	int ok = initialized;
	pthread_mutex_unlock(&mu);
	if (!ok)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	CK_ULONG have = (present && removed()) ? 0 : 1;
	if (list == NULL) {
		*n = have;
		return CKR_OK;
	}
	if (*n < have) {
		*n = have;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (have)
		list[0] = SLOT;
	*n = have;
	return CKR_OK;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	if (slot != SLOT)
		return CKR_SLOT_ID_INVALID;
	memset(info, 0, sizeof *info);
	pad(info->slotDescription, sizeof info->slotDescription, "nethsm emulated network HSM");
	pad(info->manufacturerID, sizeof info->manufacturerID, "shakenline lab");
	info->flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT | (removed() ? 0 : CKF_TOKEN_PRESENT);
	return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	if (slot != SLOT)
		return CKR_SLOT_ID_INVALID;
	if (removed())
		return CKR_TOKEN_NOT_PRESENT;
	memset(info, 0, sizeof *info);
	pad(info->label, sizeof info->label, cf.token);
	pad(info->manufacturerID, sizeof info->manufacturerID, "shakenline lab");
	pad(info->model, sizeof info->model, "nethsm");
	pad(info->serialNumber, sizeof info->serialNumber, cf.serial);
	info->flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_RNG;
	pthread_mutex_lock(&mu);
	info->ulMaxSessionCount = sess_cap;
	info->ulSessionCount = sess_open;
	pthread_mutex_unlock(&mu);
	info->ulMaxRwSessionCount = 0;
	info->ulRwSessionCount = 0;
	info->ulMaxPinLen = 64;
	info->ulMinPinLen = 1;
	info->ulTotalPublicMemory = info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulTotalPrivateMemory = info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->hardwareVersion.major = info->firmwareVersion.major = 1;
	return CKR_OK;
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
	if (n == NULL)
		return CKR_ARGUMENTS_BAD;
	if (slot != SLOT)
		return CKR_SLOT_ID_INVALID;
	if (list != NULL) {
		if (*n < 1) {
			*n = 1;
			return CKR_BUFFER_TOO_SMALL;
		}
		list[0] = CKM_ECDSA;
	}
	*n = 1;
	return CKR_OK;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	if (slot != SLOT)
		return CKR_SLOT_ID_INVALID;
	if (type != CKM_ECDSA)
		return CKR_MECHANISM_INVALID;
	info->ulMinKeySize = info->ulMaxKeySize = 256;
	info->flags = CKF_HW | CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
	return CKR_OK;
}

/* ---- PKCS#11: sessions and login ------------------------------------- */

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR h)
{
	(void)app;
	(void)notify;
	if (h == NULL)
		return CKR_ARGUMENTS_BAD;
	if (slot != SLOT)
		return CKR_SLOT_ID_INVALID;
	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	if (flags & CKF_RW_SESSION)
		return CKR_TOKEN_WRITE_PROTECTED;
	pthread_mutex_lock(&mu);
	CK_RV rv = CKR_SESSION_COUNT;
	CK_RV f = atomic_load(&fault_rv);
	if (!initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (f == CKR_DEVICE_REMOVED || f == CKR_TOKEN_NOT_PRESENT || f == CKR_DEVICE_ERROR)
		rv = f;
	else {
		/* The lowest free handle: a closed session's number comes back. */
		for (unsigned long i = 0; i < sess_cap; i++) {
			if (!sess[i].used) {
				uint64_t ep = sess[i].epoch;
				memset(&sess[i], 0, sizeof sess[i]);
				sess[i].epoch = ep + 1;
				sess[i].used = 1;
				sess_open++;
				atomic_fetch_add(&st_opens, 1);
				*h = i + 1;
				rv = CKR_OK;
				break;
			}
		}
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE h)
{
	pthread_mutex_lock(&mu);
	CK_RV rv = CKR_OK;
	session_t *s;
	if (!initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if ((s = lookup(h)) == NULL)
		rv = CKR_SESSION_HANDLE_INVALID;
	else {
		end_session(s);
		atomic_fetch_add(&st_closes, 1);
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot)
{
	if (slot != SLOT)
		return CKR_SLOT_ID_INVALID;
	pthread_mutex_lock(&mu);
	CK_RV rv = CKR_OK;
	if (!initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else
		end_all_sessions();
	pthread_mutex_unlock(&mu);
	return rv;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	info->slotID = SLOT;
	info->state = logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
	info->flags = CKF_SERIAL_SESSION;
	info->ulDeviceError = 0;
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}

CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	if (user != CKU_USER)
		rv = CKR_USER_TYPE_INVALID;
	else if (logged_in)
		rv = CKR_USER_ALREADY_LOGGED_IN;
	else if (pin == NULL || pin_len != strlen(cf.pin) || memcmp(pin, cf.pin, pin_len) != 0)
		rv = CKR_PIN_INCORRECT;
	else {
		logged_in = 1;
		atomic_fetch_add(&st_logins, 1);
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

CK_RV C_Logout(CK_SESSION_HANDLE h)
{
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	rv = logged_in ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
	logged_in = 0;
	pthread_mutex_unlock(&mu);
	return rv;
}

/* ---- PKCS#11: objects ------------------------------------------------- */

static int visible(int i) { return !objs[i].is_private || logged_in; }

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
	if (tmpl == NULL && n > 0)
		return CKR_ARGUMENTS_BAD;
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	if (s->find_active) {
		pthread_mutex_unlock(&mu);
		return CKR_OPERATION_ACTIVE;
	}
	s->find_n = s->find_pos = 0;
	for (int i = 0; i < NOBJ; i++) {
		if (!visible(i))
			continue;
		int match = 1;
		for (CK_ULONG j = 0; j < n && match; j++) {
			const attr_t *a = obj_attr(&objs[i], tmpl[j].type);
			match = a != NULL && a->len == tmpl[j].ulValueLen &&
				(a->len == 0 || memcmp(a->val, tmpl[j].pValue, a->len) == 0);
		}
		if (match)
			s->find_res[s->find_n++] = i;
	}
	s->find_active = 1;
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR got)
{
	if (out == NULL || got == NULL)
		return CKR_ARGUMENTS_BAD;
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	if (!s->find_active) {
		pthread_mutex_unlock(&mu);
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	CK_ULONG k = 0;
	while (k < max && s->find_pos < s->find_n)
		out[k++] = obj_handle[s->find_res[s->find_pos++]];
	*got = k;
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	rv = s->find_active ? CKR_OK : CKR_OPERATION_NOT_INITIALIZED;
	s->find_active = 0;
	pthread_mutex_unlock(&mu);
	return rv;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
	if (tmpl == NULL && n > 0)
		return CKR_ARGUMENTS_BAD;
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	int i = obj_index(o);
	if (i < 0 || !visible(i)) {
		pthread_mutex_unlock(&mu);
		return CKR_OBJECT_HANDLE_INVALID;
	}
	for (CK_ULONG j = 0; j < n; j++) {
		const attr_t *a = obj_attr(&objs[i], tmpl[j].type);
		if (tmpl[j].type == CKA_VALUE && objs[i].is_private) {
			tmpl[j].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_ATTRIBUTE_SENSITIVE;
		} else if (a == NULL) {
			tmpl[j].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_ATTRIBUTE_TYPE_INVALID;
		} else if (tmpl[j].pValue == NULL) {
			tmpl[j].ulValueLen = a->len;
		} else if (tmpl[j].ulValueLen < a->len) {
			tmpl[j].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_BUFFER_TOO_SMALL;
		} else {
			memcpy(tmpl[j].pValue, a->val, a->len);
			tmpl[j].ulValueLen = a->len;
		}
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

/* ---- PKCS#11: signing ------------------------------------------------- */

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	if (mech == NULL)
		return CKR_ARGUMENTS_BAD;
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK)
		return rv;
	int i = obj_index(key);
	if (s->op != 0)
		rv = CKR_OPERATION_ACTIVE;
	else if (mech->mechanism != CKM_ECDSA)
		rv = CKR_MECHANISM_INVALID;
	else if (i < 0 || !visible(i))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (i == OBJ_PUB)
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	else if (!logged_in) {
		rv = CKR_USER_NOT_LOGGED_IN;
		atomic_fetch_add(&st_not_logged_in, 1);
	}
	else {
		s->op = 1;
		s->op_key = i;
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ULL), .tv_nsec = (long)(t % 1000000000ULL)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* device_done reserves the device for one signature and returns when the
 * answer is back at the caller. */
static uint64_t device_done(uint64_t now)
{
	uint64_t cap = atomic_load(&cap_sps), svc = cap ? 1000000000ULL / cap : 0;
	uint64_t old = atomic_load(&dev_next), start;
	do {
		start = old > now ? old : now;
	} while (!atomic_compare_exchange_weak(&dev_next, &old, start + svc));
	uint64_t lat = atomic_load(&lat_ns), jit = atomic_load(&jit_ns);
	uint64_t rest = lat > svc ? lat - svc : 0;
	uint64_t t = start + svc + rest + atomic_load(&slow_ns);
	if (jit > 0)
		t += rnd() % jit;
	return t;
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	uint64_t now = mono_ns();
	if (sig_len == NULL || (data == NULL && len > 0))
		return CKR_ARGUMENTS_BAD;
	session_t *s;
	CK_RV rv = enter(h, &s);
	if (rv != CKR_OK) {
		atomic_fetch_add(&st_errors, 1);
		return rv;
	}
	if (s->op != 1) {
		pthread_mutex_unlock(&mu);
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	if (sig == NULL) { /* length query: the operation stays active */
		*sig_len = 64;
		pthread_mutex_unlock(&mu);
		return CKR_OK;
	}
	if (*sig_len < 64) {
		*sig_len = 64;
		pthread_mutex_unlock(&mu);
		return CKR_BUFFER_TOO_SMALL;
	}
	s->op = 2;
	const key_t_ *k = s->op_key == OBJ_DECOY ? &key_decoy : &key_main;
	unsigned long idx = (unsigned long)(s - sess);
	uint64_t epoch = s->epoch;
	pthread_mutex_unlock(&mu);

	int in = atomic_fetch_add(&st_inflight, 1) + 1;
	for (int m = atomic_load(&st_max_inflight); in > m && !atomic_compare_exchange_weak(&st_max_inflight, &m, in);)
		;
	/* CKM_ECDSA: the data is the hash; the leftmost 256 bits count. */
	unsigned char z[32] = {0}, out[64];
	if (len >= 32)
		memcpy(z, data, 32);
	else
		memcpy(z + 32 - len, data, len);
	uint64_t t0 = mono_ns();
	int ok = sign_digest(k, z, out);
	atomic_fetch_add(&st_compute_ns, mono_ns() - t0);

	if (atomic_load(&hang)) {
		atomic_fetch_add(&st_hung, 1);
		pthread_mutex_lock(&hang_mu);
		while (atomic_load(&hang))
			pthread_cond_wait(&hang_cv, &hang_mu);
		pthread_mutex_unlock(&hang_mu);
	}
	uint64_t done = device_done(now);
	if (done > mono_ns())
		sleep_until(done);
	atomic_fetch_sub(&st_inflight, 1);

	pthread_mutex_lock(&mu);
	CK_RV f = atomic_load(&fault_rv);
	if (!initialized)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (f != CKR_OK && f != CKR_SESSION_HANDLE_INVALID)
		rv = f;
	else if (sess[idx].epoch != epoch || !sess[idx].used)
		rv = CKR_SESSION_HANDLE_INVALID; /* closed while the device worked */
	else if (!ok)
		rv = CKR_FUNCTION_FAILED;
	if (sess[idx].epoch == epoch)
		sess[idx].op = 0;
	pthread_mutex_unlock(&mu);
	if (rv != CKR_OK) {
		atomic_fetch_add(&st_errors, 1);
		return rv;
	}
	memcpy(sig, out, 64);
	*sig_len = 64;
	atomic_fetch_add(&st_signs, 1);
	return CKR_OK;
}

/* ---- PKCS#11: the rest is not supported ------------------------------ */

#define NOSUP(name, args)                                                                                    \
	CK_RV name args { return CKR_FUNCTION_NOT_SUPPORTED; }

NOSUP(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c))
NOSUP(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d))
NOSUP(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c))
NOSUP(C_SetPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e))
NOSUP(C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
NOSUP(C_SetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e))
NOSUP(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d))
NOSUP(C_CopyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e))
NOSUP(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b))
NOSUP(C_GetObjectSize, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c))
NOSUP(C_SetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d))
NOSUP(C_EncryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
NOSUP(C_Encrypt, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_EncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
NOSUP(C_DecryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
NOSUP(C_Decrypt, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_DecryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_DecryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
NOSUP(C_DigestInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b))
NOSUP(C_Digest, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_DigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
NOSUP(C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b))
NOSUP(C_DigestFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
NOSUP(C_SignUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
NOSUP(C_SignFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
NOSUP(C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
NOSUP(C_SignRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_VerifyInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
NOSUP(C_Verify, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e))
NOSUP(C_VerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
NOSUP(C_VerifyFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
NOSUP(C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
NOSUP(C_VerifyRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_DigestEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_DecryptDigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_SignEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
NOSUP(C_GenerateKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e))
NOSUP(C_GenerateKeyPair, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_ATTRIBUTE_PTR e,
			  CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR h))
NOSUP(C_WrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d, CK_BYTE_PTR e,
		  CK_ULONG_PTR f))
NOSUP(C_UnwrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d, CK_ULONG e,
		    CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR h))
NOSUP(C_DeriveKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d, CK_ULONG e,
		    CK_OBJECT_HANDLE_PTR f))
NOSUP(C_SeedRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
NOSUP(C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
NOSUP(C_GetFunctionStatus, (CK_SESSION_HANDLE a))
NOSUP(C_CancelFunction, (CK_SESSION_HANDLE a))

CK_FUNCTION_LIST nethsm_functions = {
	{2, 40},
	C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList, C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo,
	C_GetMechanismList, C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession,
	C_CloseAllSessions, C_GetSessionInfo, C_GetOperationState, C_SetOperationState, C_Login, C_Logout,
	C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize, C_GetAttributeValue, C_SetAttributeValue,
	C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal, C_EncryptInit, C_Encrypt, C_EncryptUpdate,
	C_EncryptFinal, C_DecryptInit, C_Decrypt, C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest,
	C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit, C_Sign, C_SignUpdate, C_SignFinal,
	C_SignRecoverInit, C_SignRecover, C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal,
	C_VerifyRecoverInit, C_VerifyRecover, C_DigestEncryptUpdate, C_DecryptDigestUpdate, C_SignEncryptUpdate,
	C_DecryptVerifyUpdate, C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey, C_DeriveKey,
	C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction, C_WaitForSlotEvent,
};
