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

const char *shmp_strerror(int err)
{
	switch (err) {
	case SHMP_ECORRUPT: return "shared state is corrupted (failed validation)";
	case SHMP_EVERSION: return "segment has another layout version";
	case SHMP_EBROKEN: return "barrier is broken";
	case SHMP_ECLOSED: return "object is closed";
	case SHMP_EWORKERDIED: return "the worker running the task died";
	case SHMP_ETASK: return "the task failed";
	case SHMP_ETYPE: return "object has another type";
	case SHMP_EINIT: return "a pool worker's initializer failed";
	case 0: return "success";
	default: break;
	}
	if (err < 0)
		err = -err;
	if (err >= SHMP_EBASE)
		return "unknown shmp error";
	/* strerrordesc_np is thread-safe and never NULL for known errno values. */
	const char *s = strerrordesc_np(err);
	return s ? s : "unknown error";
}
