# SPDX-License-Identifier: LGPL-2.1-or-later
#
# transient_libc_module(TARGET SYMFILE): makes the shared library TARGET a module that programs
# load into themselves (glibc's NSS, shadow's libsubid, setuid ones included): it links only libc,
# exports only what the version script SYMFILE lists, and has no exceptions or RTTI. Linked by
# the C driver: libstdc++ is then not even on the link line, so any use of it (operator new, a
# guarded static, std::terminate) fails the link under -z defs instead of silently adding a
# NEEDED entry (checked by the "abi" tests).
#
# TRANSIENT_MODULE_LIBDIR: where such modules are installed. glibc and libsubid look for them in
# the multiarch libdir (lib/x86_64-linux-gnu on Debian) whatever prefix the tree was configured
# with, and setuid programs ignore LD_LIBRARY_PATH, so `cmake --install --prefix /usr` must land
# there too.
function(transient_libc_module target symfile)
  set_target_properties(${target} PROPERTIES
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LINKER_LANGUAGE C
    LINK_DEPENDS ${symfile})
  target_compile_options(${target} PRIVATE -fno-exceptions -fno-rtti)
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${symfile}
    -Wl,-z,defs -Wl,-z,now -Wl,-z,nodelete -Wl,--as-needed)
endfunction()

if(CMAKE_LIBRARY_ARCHITECTURE)
  set(TRANSIENT_MODULE_LIBDIR lib/${CMAKE_LIBRARY_ARCHITECTURE})
else()
  set(TRANSIENT_MODULE_LIBDIR ${CMAKE_INSTALL_LIBDIR})
endif()
