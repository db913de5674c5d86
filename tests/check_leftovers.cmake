# Fails if a test left a shmp segment of the suite (named shmp.t*) in /dev/shm.
file(GLOB left "${DIR}/shmp.t*")
if(left)
  file(REMOVE ${left})
  message(FATAL_ERROR "segments left behind by the tests: ${left}")
endif()
message(STATUS "no segments left behind")
