# Run at install time (see CMakeLists.txt): writes lmtp.pc for the prefix
# being installed to. In:
#   LMTP_PC_IN, LMTP_PC_OUT            the template and the file to write
#   LMTP_PC_LIBDIR, LMTP_PC_INCLUDEDIR CMAKE_INSTALL_LIBDIR/INCLUDEDIR (relative or absolute)
#   LMTP_PC_VERSION                    PROJECT_VERSION
#   CMAKE_INSTALL_PREFIX               set by the install script (honours --prefix)
set(LMTP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
# "/usr/" -> "/usr", so that "${prefix}/lib" has no double slash ("/" stays "/").
string(REGEX REPLACE "(.)/+$" "\\1" LMTP_PC_PREFIX "${LMTP_PC_PREFIX}")
# A relative directory is below the prefix: say so with ${prefix}, as
# pkg-config users expect (--define-prefix, --variable=prefix). An absolute
# one is taken as given.
if(IS_ABSOLUTE "${LMTP_PC_LIBDIR}")
  set(LMTP_PC_LIBDIR_VALUE "${LMTP_PC_LIBDIR}")
else()
  set(LMTP_PC_LIBDIR_VALUE "\${exec_prefix}/${LMTP_PC_LIBDIR}")
endif()
if(IS_ABSOLUTE "${LMTP_PC_INCLUDEDIR}")
  set(LMTP_PC_INCLUDEDIR_VALUE "${LMTP_PC_INCLUDEDIR}")
else()
  set(LMTP_PC_INCLUDEDIR_VALUE "\${prefix}/${LMTP_PC_INCLUDEDIR}")
endif()
configure_file("${LMTP_PC_IN}" "${LMTP_PC_OUT}" @ONLY)
