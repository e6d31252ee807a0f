# Small helpers so each folder's CMakeLists.txt states only what is particular to it.
include(CMakeParseArguments)

# One precompiled header for every target that uses LibTorch. It is compiled once, by this
# target, and reused (REUSE_FROM) by the others; build facts live in a generated header rather
# than -D flags so that the flags of every consumer match.
function(holo_make_torch_pch)
  add_library(holo_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc)
  target_link_libraries(holo_torch_pch PUBLIC ${TORCH_LIBRARIES} Threads::Threads)
  target_precompile_headers(holo_torch_pch PRIVATE <torch/torch.h>)
  target_compile_options(holo_torch_pch PRIVATE -Winvalid-pch)
endfunction()

function(_holo_use_torch target)
  target_link_libraries(${target} PRIVATE ${TORCH_LIBRARIES})
  target_precompile_headers(${target} REUSE_FROM holo_torch_pch)
  target_compile_options(${target} PRIVATE -Winvalid-pch)
endfunction()

# holo_library(NAME core SOURCES a.cc b.cc PUBLIC_DEPS ... PRIVATE_DEPS ... [TORCH])
# Creates holo_<NAME> with the alias holo::<NAME>. TORCH links LibTorch publicly and compiles the
# sources with the shared precompiled header.
function(holo_library)
  cmake_parse_arguments(A "TORCH" "NAME" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target holo_${A_NAME})
  add_library(${target} STATIC ${A_SOURCES})
  add_library(holo::${A_NAME} ALIAS ${target})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}
                                              ${PROJECT_BINARY_DIR}/generated)
  target_link_libraries(${target} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(A_TORCH)
    target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
    _holo_use_torch(${target})
  endif()
endfunction()

# holo_test(NAME recipe SOURCES recipe_test.cc DEPS holo::core LABELS unit
#           [MPI_RANKS 2 3] [TORCH])
# One GoogleTest executable, registered with CTest once (or once per rank count under mpiexec).
function(holo_test)
  cmake_parse_arguments(A "TORCH" "NAME" "SOURCES;DEPS;LABELS;MPI_RANKS" ${ARGN})
  set(target test_${A_NAME})
  add_executable(${target} ${A_SOURCES} ${PROJECT_SOURCE_DIR}/tests/test_main.cc)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock)
  if(A_TORCH)
    _holo_use_torch(${target})
  endif()
  set(test_env "HOLO_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
               "HOLO_BINARY=$<TARGET_FILE_DIR:holo>/holo"
               "HOLO_TEST_TMP=${PROJECT_BINARY_DIR}/test-tmp")
  if(A_MPI_RANKS)
    foreach(np ${A_MPI_RANKS})
      add_test(NAME ${A_NAME}_np${np}
               COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe
                       --bind-to none ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:${target}>)
      set_tests_properties(${A_NAME}_np${np} PROPERTIES LABELS "${A_LABELS}"
                           ENVIRONMENT "${test_env}" PROCESSORS ${np})
    endforeach()
  else()
    add_test(NAME ${A_NAME} COMMAND ${target})
    set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" ENVIRONMENT "${test_env}")
  endif()
endfunction()
