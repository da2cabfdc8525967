package hsm

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

// The few Cryptoki types this file needs (PKCS#11 v2.40 section 3, Linux
// ABI: CK_ULONG is unsigned long, structures are not packed).
typedef unsigned long shk_ulong;
typedef struct {
	shk_ulong mechanism;
	void *parameter;
	shk_ulong parameter_len;
} shk_mechanism;

// CK_FUNCTION_LIST up to C_Sign: the version, then 42 entry points
// (C_Initialize ... C_DigestFinal) in the standard's order, then C_SignInit
// and C_Sign. The layout is fixed by the standard for every 2.x and 3.x
// module (3.0 only appends to the list).
typedef struct {
	unsigned char major, minor;
	void *before_sign[42];
	shk_ulong (*sign_init)(shk_ulong session, shk_mechanism *mech, shk_ulong key);
	shk_ulong (*sign)(shk_ulong session, unsigned char *data, shk_ulong len, unsigned char *sig, shk_ulong *sig_len);
} shk_function_list;

#define SHK_CKM_ECDSA 0x1041UL
#define SHK_BAD_LENGTH (~0UL)
#define SHK_STALE (~0UL - 1)

// shk_list returns the function list miekg/pkcs11 holds for path: its
// context is {library handle, CK_FUNCTION_LIST_PTR} (miekg/pkcs11 v1.1.2,
// struct ctx). Checked: the handle must be the one dlopen returns for the
// already loaded path, and where the module exports C_SignInit/C_Sign as
// symbols they must be the list's entries. NULL when a check fails.
// (A second C_GetFunctionList would not do: some modules, p11-kit-client
// among them, return a new, uninitialised instance on every call.)
static void *shk_list(void *miekg_ctx, const char *path) {
	struct { void *handle; void *sym; } *c = miekg_ctx;
	if (c == NULL || c->sym == NULL)
		return NULL;
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL)
		return NULL;
	void *si = dlsym(h, "C_SignInit"), *s = dlsym(h, "C_Sign");
	dlclose(h);
	shk_function_list *f = c->sym;
	if (c->handle != h || f->major < 2 || f->sign_init == NULL || f->sign == NULL ||
	    (si != NULL && si != (void *)f->sign_init) || (s != NULL && s != (void *)f->sign))
		return NULL;
	return c->sym;
}

// shk_sign signs n 32-byte digests on one session: C_SignInit(CKM_ECDSA)
// then one C_Sign into a 64-byte buffer each (no length query: a P-256
// signature is 64 bytes). rv[i] is the Cryptoki result of digest i, or
// SHK_BAD_LENGTH. Before each digest *live must still be gen (the token
// generation the session and key handles belong to): once the signer has
// lost the token, the handles may name another session or object, and the
// rest of the batch is SHK_STALE without a call.
static void shk_sign(void *fl, shk_ulong session, shk_ulong key, int n,
		     unsigned char *digests, unsigned char *sigs, shk_ulong *rv,
		     unsigned long long *live, unsigned long long gen) {
	shk_function_list *f = fl;
	shk_mechanism m = {SHK_CKM_ECDSA, NULL, 0};
	for (int i = 0; i < n; i++) {
		shk_ulong len = 64;
		if (__atomic_load_n(live, __ATOMIC_ACQUIRE) != gen) {
			rv[i] = SHK_STALE;
			continue;
		}
		rv[i] = f->sign_init(session, &m, key);
		if (rv[i] == 0)
			rv[i] = f->sign(session, digests + 32 * i, 32, sigs + 64 * i, &len);
		if (rv[i] == 0 && len != 64)
			rv[i] = SHK_BAD_LENGTH;
	}
}
*/
import "C"

import (
	"sync/atomic"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// maxBatch bounds the digests one signCall signs (and Batch.MaxSize).
const maxBatch = 64

// directList is the module's CK_FUNCTION_LIST, called from C for the
// signing calls only: one cgo crossing signs a whole batch, and each
// signature is one C_SignInit and one C_Sign, with no allocation
// (miekg/pkcs11 asks C_Sign for the length first, then allocates the
// result). It is the very list miekg/pkcs11 uses, so sessions, handles and
// the login are shared; it lives as long as the miekg/pkcs11 context.
type directList struct {
	fl unsafe.Pointer
}

// openDirect returns ctx's function list (ctx loaded path); nil when it
// cannot be used, and the signer then calls through miekg/pkcs11.
func openDirect(ctx *pkcs11.Ctx, path string) *directList {
	if ctx == nil {
		return nil
	}
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	// pkcs11.Ctx is struct{ ctx *C.struct_ctx }.
	fl := C.shk_list(*(*unsafe.Pointer)(unsafe.Pointer(ctx)), cs)
	if fl == nil {
		return nil
	}
	return &directList{fl: fl}
}

// signBuf is one batch's buffers, passed to C as is (no Go pointers inside).
type signBuf struct {
	digest [maxBatch][32]byte
	sig    [maxBatch][64]byte
	rv     [maxBatch]C.shk_ulong
}

// sign signs b.digest[:n] on session s with key while live holds gen;
// errs[i] is nil or the Cryptoki error (pkcs11.Error) of digest i,
// ErrSignature for a wrong length, errStale for a digest not signed
// because live changed.
func (d *directList) sign(s pkcs11.SessionHandle, key pkcs11.ObjectHandle, b *signBuf, n int, errs []error, live *atomic.Uint64, gen uint64) {
	// atomic.Uint64 is its uint64 (the other fields have no size).
	C.shk_sign(d.fl, C.shk_ulong(s), C.shk_ulong(key), C.int(n),
		(*C.uchar)(unsafe.Pointer(&b.digest[0])), (*C.uchar)(unsafe.Pointer(&b.sig[0])), &b.rv[0],
		(*C.ulonglong)(unsafe.Pointer(live)), C.ulonglong(gen))
	for i := range n {
		switch rv := b.rv[i]; rv {
		case 0:
			errs[i] = nil
		case C.SHK_BAD_LENGTH:
			errs[i] = ErrSignature
		case C.SHK_STALE:
			errs[i] = errStale
		default:
			errs[i] = pkcs11.Error(rv)
		}
	}
}
