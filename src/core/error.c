/* private: version and error names. */
#include "internal.h"

unsigned shmp_version(void)
{
	return SHMP_VERSION_NUMBER;
}

const char *shmp_version_string(void)
{
	return SHMP_VERSION_STRING;
}

static const char *const shmp_codes[] = {
	[SHMP_ECORRUPT - SHMP_EBASE] = "shared state is corrupted (failed validation)",
	[SHMP_EVERSION - SHMP_EBASE] = "segment has another layout version",
	[SHMP_EBROKEN - SHMP_EBASE] = "broken (barrier aborted, reset, timed out or a party died; "
				      "or the pool's zygote died)",
	[SHMP_ECLOSED - SHMP_EBASE] = "object is closed",
	[SHMP_EWORKERDIED - SHMP_EBASE] = "the worker running the task died",
	[SHMP_ETASK - SHMP_EBASE] = "the task failed",
	[SHMP_ETYPE - SHMP_EBASE] = "object has another type",
	[SHMP_EINIT - SHMP_EBASE] = "a pool worker's initializer failed",
	[SHMP_EOWNER - SHMP_EBASE] = "segment is owned by another user or writable by others "
				     "(see the trust options SHMP_TRUST_UID, _GID, _ANYONE)",
	[SHMP_ESEGFULL - SHMP_EBASE] = "segment is full: raise its size (create's size, "
				       "SHMP_DEFAULT_SEGMENT_SIZE, or the pool's segment_size)",
	[SHMP_ENOTCLOSED - SHMP_EBASE] = "still running: close() or terminate() it first",
	[SHMP_EBADFN - SHMP_EBASE] = "task function is not in an executable mapping of this program",
	[SHMP_ESKIPPED - SHMP_EBASE] = "item not run: an earlier item of its chunk failed",
	[SHMP_ELOCKED - SHMP_EBASE] = "a lock in shared memory stayed held past its bound "
				      "(a stopped or hostile process holds it)",
};

const char *shmp_strerror(int err)
{
	/* Either sign; INT_MIN has no positive counterpart and names nothing. */
	unsigned code = err < 0 ? 0u - (unsigned)err : (unsigned)err;
	if (code == 0)
		return "success";
	if (code > SHMP_EBASE && code <= SHMP_ELAST)
		return shmp_codes[code - SHMP_EBASE];
	if (code >= SHMP_EBASE)
		return "unknown error";
	/* strerrordesc_np is thread-safe and NULL for unknown values. */
	const char *s = strerrordesc_np((int)code);
	return s ? s : "unknown error";
}
