#include <libmemcached/memcached.h>
#include <libmemcached/util.h>
