/* avrojson: Avro values as JSON, with Debezium's decimals and bytes. */
#include <avro.h>
#include <jansson.h>
#include <string.h>

#include "avrojson.h"
#include "check_main.h"

static const char *dec(const unsigned char *b, size_t n, int scale) {
        static char out[256];
        ck_assert_int_ge(krib_avrojson_decimal(b, n, scale, out, sizeof(out)), 0);
        return out;
}

START_TEST(decimals_in_plain_text) {
        const unsigned char v1234[] = {0x04, 0xd2}; /* 1234 */
        ck_assert_str_eq(dec(v1234, 2, 0), "1234");
        ck_assert_str_eq(dec(v1234, 2, 2), "12.34");
        ck_assert_str_eq(dec(v1234, 2, 5), "0.01234");
        const unsigned char m5[] = {0xfb}; /* -5 */
        ck_assert_str_eq(dec(m5, 1, 2), "-0.05");
        ck_assert_str_eq(dec(m5, 1, 0), "-5");
        const unsigned char zero[] = {0x00};
        ck_assert_str_eq(dec(zero, 1, 3), "0.000");
        ck_assert_str_eq(dec(NULL, 0, 0), "0");
        const unsigned char m128[] = {0x80}; /* -128: the edge of one byte */
        ck_assert_str_eq(dec(m128, 1, 0), "-128");
        const unsigned char pos128[] = {0x00, 0x80};
        ck_assert_str_eq(dec(pos128, 2, 0), "128");
        /* 2^64 + 1: beyond int64, still exact. */
        const unsigned char big[] = {0x01, 0, 0, 0, 0, 0, 0, 0, 0x01};
        ck_assert_str_eq(dec(big, 9, 0), "18446744073709551617");
        char out[8];
        ck_assert_int_eq(krib_avrojson_decimal(v1234, 2, 2, out, 5), -1); /* too small */
        unsigned char huge[65] = {1};
        ck_assert_int_eq(krib_avrojson_decimal(huge, 65, 0, out, sizeof(out)), -1);
}
END_TEST

/* The shape Debezium's AvroConverter writes for a NUMERIC(10,2) column and
 * a bytea column, inside the envelope's named row record. */
static const char *SCHEMA =
        "{\"type\":\"record\",\"name\":\"Envelope\",\"namespace\":\"pg.public.items\","
        "\"fields\":[{\"name\":\"after\",\"type\":[\"null\",{\"type\":\"record\",\"name\":"
        "\"Value\",\"fields\":["
        "{\"name\":\"id\",\"type\":{\"type\":\"bytes\",\"scale\":0,\"precision\":10,"
        "\"connect.version\":1,\"connect.parameters\":{\"scale\":\"0\","
        "\"connect.decimal.precision\":\"10\"},\"connect.name\":"
        "\"org.apache.kafka.connect.data.Decimal\",\"logicalType\":\"decimal\"}},"
        "{\"name\":\"price\",\"type\":[\"null\",{\"type\":\"bytes\",\"connect.name\":"
        "\"org.apache.kafka.connect.data.Decimal\",\"connect.parameters\":{\"scale\":\"2\"}}]},"
        "{\"name\":\"photo\",\"type\":[\"null\",\"bytes\"]}]}]}]}";

START_TEST(debezium_row_with_decimal_and_bytes) {
        krib_avrojson_decimals_t *d = krib_avrojson_scan(SCHEMA);
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(krib_avrojson_count(d), 2);
        avro_schema_t s;
        ck_assert_int_eq(avro_schema_from_json_length(SCHEMA, strlen(SCHEMA), &s), 0);
        avro_value_iface_t *iface = avro_generic_class_from_schema(s);
        avro_value_t v, after, row, f, b;
        ck_assert_int_eq(avro_generic_value_new(iface, &v), 0);
        ck_assert_int_eq(avro_value_get_by_name(&v, "after", &after, NULL), 0);
        ck_assert_int_eq(avro_value_set_branch(&after, 1, &row), 0);
        unsigned char id[] = {0x2a}, price[] = {0x04, 0xd2}, photo[] = {0xff, 0x00, 0x10};
        ck_assert_int_eq(avro_value_get_by_name(&row, "id", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_bytes(&f, id, sizeof(id)), 0);
        ck_assert_int_eq(avro_value_get_by_name(&row, "price", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_branch(&f, 1, &b), 0);
        ck_assert_int_eq(avro_value_set_bytes(&b, price, sizeof(price)), 0);
        ck_assert_int_eq(avro_value_get_by_name(&row, "photo", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_branch(&f, 1, &b), 0);
        ck_assert_int_eq(avro_value_set_bytes(&b, photo, sizeof(photo)), 0);
        json_t *j = krib_avrojson_value(&v, d);
        ck_assert_ptr_nonnull(j);
        json_t *a = json_object_get(j, "after");
        ck_assert_str_eq(json_string_value(json_object_get(a, "id")), "42");
        ck_assert_str_eq(json_string_value(json_object_get(a, "price")), "12.34");
        ck_assert_str_eq(json_string_value(json_object_get(a, "photo")), "/wAQ");
        json_decref(j);
        /* Without the scan, a decimal is only bytes: base64, never invalid UTF-8. */
        j = krib_avrojson_value(&v, NULL);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "after"), "id")),
                         "Kg==");
        json_decref(j);
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
        avro_schema_decref(s);
        krib_avrojson_free(d);
}
END_TEST

START_TEST(scan_refuses_what_is_not_json) {
        ck_assert_ptr_null(krib_avrojson_scan("not json"));
        krib_avrojson_decimals_t *d = krib_avrojson_scan("\"string\"");
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(krib_avrojson_count(d), 0);
        krib_avrojson_free(d);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("avrojson");
        TCase *tc = tcase_create("avrojson");
        tcase_add_test(tc, decimals_in_plain_text);
        tcase_add_test(tc, debezium_row_with_decimal_and_bytes);
        tcase_add_test(tc, scan_refuses_what_is_not_json);
        suite_add_tcase(s, tc);
        return s;
}
