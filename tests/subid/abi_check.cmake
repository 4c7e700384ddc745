# SPDX-License-Identifier: LGPL-2.1-or-later
# The ABI of libsubid_transient.so, checked on the built file:
#   cmake -DPROVIDER=<path> [-DNM=nm] [-DREADELF=readelf] -P abi_check.cmake
# - the dynamic symbol table defines exactly shadow's four shadow_subid_* entry points
#   (shadow >= 4.16 refuses a provider without shadow_subid_free);
# - NEEDED is exactly libc.so.6: it runs inside setuid newuidmap and links nothing else;
# - SONAME is libsubid_transient.so (the name shadow dlopen()s); BIND_NOW is set;
# - there are no static constructors.
cmake_minimum_required(VERSION 3.25)

if(NOT PROVIDER OR NOT EXISTS "${PROVIDER}")
  message(FATAL_ERROR "PROVIDER='${PROVIDER}' does not exist")
endif()
if(NOT NM)
  set(NM nm)
endif()
if(NOT READELF)
  set(READELF readelf)
endif()

set(expected shadow_subid_find_subid_owners shadow_subid_free shadow_subid_has_range
             shadow_subid_list_owner_ranges)
set(failures "")

execute_process(COMMAND ${NM} -D --defined-only "${PROVIDER}" OUTPUT_VARIABLE nm_out
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${nm_out}")
set(exported "")
foreach(line IN LISTS lines)
  # "A" symbols are version nodes, not code or data.
  if(line MATCHES "^[0-9a-fA-F]* *([A-Za-z]) ([^ @]+)" AND NOT CMAKE_MATCH_1 STREQUAL "A")
    list(APPEND exported "${CMAKE_MATCH_2}")
  endif()
endforeach()
list(SORT exported)
if(NOT exported STREQUAL expected)
  string(APPEND failures "exports are [${exported}], want [${expected}]\n")
endif()

execute_process(COMMAND ${READELF} -d "${PROVIDER}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} failed (${rc})")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[[^]\n]*\\]" needed_lines "${dyn}")
set(needed "")
foreach(l IN LISTS needed_lines)
  string(REGEX REPLACE ".*\\[(.*)\\]" "\\1" lib "${l}")
  list(APPEND needed "${lib}")
endforeach()
if(NOT needed STREQUAL "libc.so.6")
  string(APPEND failures "NEEDED is [${needed}], want [libc.so.6]\n")
endif()
if(NOT dyn MATCHES "\\(SONAME\\)[^\n]*\\[libsubid_transient\\.so\\]")
  string(APPEND failures "SONAME is not libsubid_transient.so\n")
endif()
if(NOT dyn MATCHES "FLAGS_1\\)[^\n]*NOW")
  string(APPEND failures "FLAGS_1 lacks NOW (-z now)\n")
endif()

execute_process(COMMAND ${NM} "${PROVIDER}" OUTPUT_VARIABLE all_syms ERROR_QUIET)
if(all_syms MATCHES "_GLOBAL__sub_I_[^\n]*")
  string(APPEND failures "static constructor: ${CMAKE_MATCH_0}\n")
endif()

if(failures)
  message(FATAL_ERROR "ABI check of ${PROVIDER} failed:\n${failures}")
endif()
message(STATUS "ABI of ${PROVIDER}: the 4 shadow_subid_* exports, NEEDED libc.so.6 only - OK")
