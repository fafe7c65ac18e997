# A compile-fail test: SOURCE must compile with -DCNNVIZ_CONTROL (the accepted form, so
# a failure below is not a typo or a missing include) and must fail without it, with a
# diagnostic matching EXPECT. Syntax check only: no object file, no link.
# cmake -DCOMPILER=... -DSOURCE=... -DINCLUDES="a;b" -DEXPECT=regex -P check.cmake
set(flags -std=c++17 -fsyntax-only)
foreach(dir IN LISTS INCLUDES)
  list(APPEND flags "-I${dir}")
endforeach()
execute_process(COMMAND ${COMPILER} ${flags} -DCNNVIZ_CONTROL ${SOURCE}
                RESULT_VARIABLE control_rc ERROR_VARIABLE control_err OUTPUT_QUIET)
if(NOT control_rc EQUAL 0)
  message(FATAL_ERROR "the accepted form of ${SOURCE} does not compile:\n${control_err}")
endif()
execute_process(COMMAND ${COMPILER} ${flags} ${SOURCE}
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must be rejected")
endif()
if(NOT err MATCHES "${EXPECT}")
  message(FATAL_ERROR "${SOURCE} was rejected, but not with '${EXPECT}':\n${err}")
endif()
message(STATUS "rejected as expected: ${SOURCE}")
