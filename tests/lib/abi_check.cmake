# SPDX-License-Identifier: LGPL-2.1-or-later
# The ABI of a libc-only library (the NSS module, the subid provider), checked on the built file:
#   cmake -DLIBRARY=<path> -DSONAME=<soname> -DEXPORTS=<a,b,...> [-DNM=nm] [-DREADELF=readelf]
#         -P abi_check.cmake
# - the dynamic symbol table defines exactly EXPORTS (a version node, if a toolchain emits one
#   as an ABS symbol, is ignored);
# - NEEDED is exactly libc.so.6 (no libstdc++, libgcc_s, libm, ld-linux): both are loaded into
#   arbitrary processes, the provider into setuid newuidmap;
# - SONAME is SONAME (the name glibc and shadow dlopen()); BIND_NOW and NODELETE are set
#   (transient_libc_module() links both that way);
# - there are no static constructors (_GLOBAL__sub_I_* functions).
# Lists are comma-separated: a ';' would split the argument on its way through add_test().
cmake_minimum_required(VERSION 3.25)

if(NOT LIBRARY OR NOT EXISTS "${LIBRARY}")
  message(FATAL_ERROR "LIBRARY='${LIBRARY}' does not exist")
endif()
if(NOT SONAME OR NOT EXPORTS)
  message(FATAL_ERROR "SONAME and EXPORTS must be given")
endif()
if(NOT NM)
  set(NM nm)
endif()
if(NOT READELF)
  set(READELF readelf)
endif()
string(REPLACE "," ";" expected_symbols "${EXPORTS}")
list(SORT expected_symbols)
list(LENGTH expected_symbols export_count)

set(failures "")

# Exports.
execute_process(COMMAND ${NM} -D --defined-only "${LIBRARY}"
  OUTPUT_VARIABLE nm_out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${nm_out}")
set(exported "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-fA-F]* *([A-Za-z]) ([^ ]+)$")
    set(type "${CMAKE_MATCH_1}")
    set(name "${CMAKE_MATCH_2}")
    # A version node shows up as an absolute symbol named after the node.
    if(type STREQUAL "A")
      continue()
    endif()
    string(REGEX REPLACE "@.*" "" name "${name}")
    list(APPEND exported "${name}")
  elseif(NOT line STREQUAL "")
    string(APPEND failures "unparsed nm line: '${line}'\n")
  endif()
endforeach()
list(SORT exported)
if(NOT exported STREQUAL expected_symbols)
  set(extra ${exported})
  list(REMOVE_ITEM extra ${expected_symbols})
  set(missing ${expected_symbols})
  if(exported)
    list(REMOVE_ITEM missing ${exported})
  endif()
  string(APPEND failures "exports differ: extra=[${extra}] missing=[${missing}]\n")
endif()

# Dynamic section.
execute_process(COMMAND ${READELF} -d "${LIBRARY}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
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
string(REPLACE "." "\\." soname_regex "${SONAME}")
if(NOT dyn MATCHES "\\(SONAME\\)[^\n]*\\[${soname_regex}\\]")
  string(APPEND failures "SONAME is not ${SONAME}\n")
endif()
if(NOT dyn MATCHES "FLAGS_1\\)[^\n]*NOW" OR NOT dyn MATCHES "FLAGS_1\\)[^\n]*NODELETE")
  string(APPEND failures "FLAGS_1 lacks NOW or NODELETE (-z now, -z nodelete)\n")
endif()

# Static constructors (the full symbol table; absent if the library was stripped).
execute_process(COMMAND ${NM} "${LIBRARY}" OUTPUT_VARIABLE all_syms ERROR_QUIET)
if(all_syms MATCHES "_GLOBAL__sub_I_[^\n]*")
  string(APPEND failures "static constructor: ${CMAKE_MATCH_0}\n")
endif()

if(failures)
  message(FATAL_ERROR "ABI check of ${LIBRARY} failed:\n${failures}")
endif()
message(STATUS "ABI of ${LIBRARY}: the ${export_count} exports, NEEDED libc.so.6 only - OK")
