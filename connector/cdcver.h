/* cdcver: version counters from MySQL/MariaDB change positions (pure).
 *
 * Debezium's MySQL and MariaDB connectors put the binlog coordinates of a
 * change in the envelope's source block: `file` (binlog.000042), `pos` (the
 * row event's position in that file), `row` (the row within the event) and,
 * with GTIDs, `gtid` (the transaction's: MariaDB `domain-server-seq`, MySQL
 * `uuid:seq`). Each change of one row gets a strictly larger binlog position
 * than the one before on the same server, while every change of one
 * transaction shares its GTID; so a GTID alone cannot order two changes of a
 * row inside one transaction, and route.c pairs it with the binlog counter.
 *
 * The binlog counter packs, most significant first, the file's sequence
 * number (KRIB_CDCVER_FILE_BITS), the position (KRIB_CDCVER_POS_BITS) and the
 * row (KRIB_CDCVER_ROW_BITS) into 63 bits. A sequence or position that does
 * not fit is an error (the event is dead-lettered with the reason), never a
 * wrapped value. A row number past the row field saturates: rows of one
 * binlog event are distinct rows of a statement, so only a second change of
 * the same row within one event past row 2047 could share a counter.
 */
#ifndef KRIB_CDCVER_H
#define KRIB_CDCVER_H

#include <stddef.h>
#include <stdint.h>

#define KRIB_CDCVER_FILE_BITS 20 /* binlog files 1..1048575 */
#define KRIB_CDCVER_POS_BITS  32 /* positions below 4 GiB */
#define KRIB_CDCVER_ROW_BITS  11 /* rows 0..2047 of one event, then saturated */

/* file ("binlog.000042", or any name ending in .<digits>), pos and row
 * (negative: absent, 0) into *out. 0, or -1 with the reason in err. */
int krib_cdcver_binlog(const char *file, int64_t pos, int64_t row, int64_t *out, char *err,
                       size_t err_size);

/* A GTID into its ordering domain and sequence number: MariaDB "0-1-42" ->
 * ("0", 42), MySQL "3e11fa47-71ca-11e1-9e33-c80aa9429562:23" -> (the uuid
 * in lower case, 23). A MySQL GTID set ("uuid:1-23,uuid2:5") is refused: a
 * change event carries one transaction's GTID. 0, or -1 with err. */
int krib_cdcver_gtid(const char *gtid, char *domain, size_t domain_size, int64_t *seq, char *err,
                     size_t err_size);

#endif
