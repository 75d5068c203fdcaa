/* version: krib's release, printed by --version and exported as
 * krib_build_info. */
#ifndef KRIB_VERSION_H
#define KRIB_VERSION_H

#define KRIB_VERSION "0.1.0"

#endif
