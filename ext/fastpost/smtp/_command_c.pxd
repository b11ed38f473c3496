# Declarations of ext/fastpost/smtp/_command_c.pyx for the kernels that cimport it
# (_server_c: the common commands parsed in the reader's buffer, no bytes objects).

cdef object quick_ptr(const unsigned char *v, Py_ssize_t vn, const unsigned char *a,
                      Py_ssize_t n)
