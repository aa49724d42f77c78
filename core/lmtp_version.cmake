# lmtp_read_version(HEADER): sets LMTP_VERSION_MAJOR, _MINOR and _PATCH in the caller's scope
# from the LMTP_VERSION_* macros of lmtp.h, the one place the version lives. Used before
# project() by the top-level build and by the Python package's own (bindings/python).
function(lmtp_read_version header)
  file(STRINGS "${header}" _lines REGEX "^#define LMTP_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_part MAJOR MINOR PATCH)
    set(_value "")
    foreach(_line IN LISTS _lines)
      if(_line MATCHES "^#define LMTP_VERSION_${_part} +([0-9]+)")
        set(_value ${CMAKE_MATCH_1})
      endif()
    endforeach()
    if(_value STREQUAL "")
      message(FATAL_ERROR "no LMTP_VERSION_${_part} in ${header}")
    endif()
    set(LMTP_VERSION_${_part} ${_value} PARENT_SCOPE)
  endforeach()
endfunction()
