#include "support/sync_counting_vfs.h"

#include <cstring>

namespace xtm::test {
namespace {

// Our file: the methods below, then the wrapped VFS's file right after it.
struct Wrapped {
  sqlite3_file base;
  std::atomic<int>* counter;  // null: not counted
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

Wrapped* W(sqlite3_file* f) { return reinterpret_cast<Wrapped*>(f); }
sqlite3_file* R(sqlite3_file* f) { return W(f)->real(); }
const sqlite3_io_methods* M(sqlite3_file* f) { return R(f)->pMethods; }

int Close(sqlite3_file* f) { return M(f) ? M(f)->xClose(R(f)) : SQLITE_OK; }
int Read(sqlite3_file* f, void* p, int n, sqlite3_int64 o) { return M(f)->xRead(R(f), p, n, o); }
int Write(sqlite3_file* f, const void* p, int n, sqlite3_int64 o) { return M(f)->xWrite(R(f), p, n, o); }
int Truncate(sqlite3_file* f, sqlite3_int64 n) { return M(f)->xTruncate(R(f), n); }
int Sync(sqlite3_file* f, int flags) {
  if (W(f)->counter) ++*W(f)->counter;
  return M(f)->xSync(R(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* n) { return M(f)->xFileSize(R(f), n); }
int Lock(sqlite3_file* f, int l) { return M(f)->xLock(R(f), l); }
int Unlock(sqlite3_file* f, int l) { return M(f)->xUnlock(R(f), l); }
int CheckReserved(sqlite3_file* f, int* r) { return M(f)->xCheckReservedLock(R(f), r); }
int FileControl(sqlite3_file* f, int op, void* a) { return M(f)->xFileControl(R(f), op, a); }
int SectorSize(sqlite3_file* f) { return M(f)->xSectorSize(R(f)); }
int DeviceCharacteristics(sqlite3_file* f) { return M(f)->xDeviceCharacteristics(R(f)); }
int ShmMap(sqlite3_file* f, int i, int sz, int e, void volatile** p) { return M(f)->xShmMap(R(f), i, sz, e, p); }
int ShmLock(sqlite3_file* f, int o, int n, int fl) { return M(f)->xShmLock(R(f), o, n, fl); }
void ShmBarrier(sqlite3_file* f) { M(f)->xShmBarrier(R(f)); }
int ShmUnmap(sqlite3_file* f, int d) { return M(f)->xShmUnmap(R(f), d); }
int Fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** p) { return M(f)->xFetch(R(f), o, n, p); }
int Unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) { return M(f)->xUnfetch(R(f), o, p); }

const sqlite3_io_methods kMethods = {3,        Close,      Read,     Write,         Truncate,
                                     Sync,     FileSize,   Lock,     Unlock,        CheckReserved,
                                     FileControl, SectorSize, DeviceCharacteristics, ShmMap, ShmLock,
                                     ShmBarrier, ShmUnmap, Fetch,   Unfetch};

int Open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  auto* self = static_cast<SyncCountingVfs*>(vfs->pAppData);
  Wrapped* w = W(file);
  std::memset(w, 0, sizeof *w);
  const int rc = self->real()->xOpen(self->real(), name, w->real(), flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  const size_t n = name ? std::strlen(name) : 0, sn = self->suffix().size();
  w->counter = n >= sn && std::memcmp(name + n - sn, self->suffix().data(), sn) == 0 ? &self->counter() : nullptr;
  w->base.pMethods = &kMethods;
  return SQLITE_OK;
}

// The rest of the VFS forwards to the wrapped one.
sqlite3_vfs* RealOf(sqlite3_vfs* v) { return static_cast<SyncCountingVfs*>(v->pAppData)->real(); }
int Delete(sqlite3_vfs* v, const char* n, int s) { return RealOf(v)->xDelete(RealOf(v), n, s); }
int Access(sqlite3_vfs* v, const char* n, int f, int* r) { return RealOf(v)->xAccess(RealOf(v), n, f, r); }
int FullPathname(sqlite3_vfs* v, const char* n, int sz, char* out) {
  return RealOf(v)->xFullPathname(RealOf(v), n, sz, out);
}
void* DlOpen(sqlite3_vfs* v, const char* n) { return RealOf(v)->xDlOpen(RealOf(v), n); }
void DlError(sqlite3_vfs* v, int n, char* m) { RealOf(v)->xDlError(RealOf(v), n, m); }
void (*DlSym(sqlite3_vfs* v, void* h, const char* s))(void) { return RealOf(v)->xDlSym(RealOf(v), h, s); }
void DlClose(sqlite3_vfs* v, void* h) { RealOf(v)->xDlClose(RealOf(v), h); }
int Randomness(sqlite3_vfs* v, int n, char* out) { return RealOf(v)->xRandomness(RealOf(v), n, out); }
int Sleep(sqlite3_vfs* v, int us) { return RealOf(v)->xSleep(RealOf(v), us); }
int CurrentTime(sqlite3_vfs* v, double* t) { return RealOf(v)->xCurrentTime(RealOf(v), t); }
int GetLastError(sqlite3_vfs* v, int n, char* m) { return RealOf(v)->xGetLastError(RealOf(v), n, m); }
int CurrentTimeInt64(sqlite3_vfs* v, sqlite3_int64* t) { return RealOf(v)->xCurrentTimeInt64(RealOf(v), t); }

}  // namespace

SyncCountingVfs::SyncCountingVfs(std::string suffix) : suffix_(std::move(suffix)) {
  real_ = sqlite3_vfs_find(nullptr);
  vfs_.iVersion = 2;
  vfs_.szOsFile = static_cast<int>(sizeof(Wrapped)) + real_->szOsFile;
  vfs_.mxPathname = real_->mxPathname;
  vfs_.zName = "xatm-test-sync-counting";
  vfs_.pAppData = this;
  vfs_.xOpen = Open;
  vfs_.xDelete = Delete;
  vfs_.xAccess = Access;
  vfs_.xFullPathname = FullPathname;
  vfs_.xDlOpen = DlOpen;
  vfs_.xDlError = DlError;
  vfs_.xDlSym = DlSym;
  vfs_.xDlClose = DlClose;
  vfs_.xRandomness = Randomness;
  vfs_.xSleep = Sleep;
  vfs_.xCurrentTime = CurrentTime;
  vfs_.xGetLastError = GetLastError;
  vfs_.xCurrentTimeInt64 = CurrentTimeInt64;
  sqlite3_vfs_register(&vfs_, /*makeDflt=*/1);
}

SyncCountingVfs::~SyncCountingVfs() {
  sqlite3_vfs_unregister(&vfs_);
  sqlite3_vfs_register(real_, 1);
}

}  // namespace xtm::test
